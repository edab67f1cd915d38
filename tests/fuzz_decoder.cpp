// libFuzzer target for the frame decoder (build with the `fuzz` preset, clang).
//
// The input is split into: a frame limit, a seed for how to chop the stream
// into chunks, and the byte stream itself. The incremental decoder, fed in
// those chunks, must agree exactly with a plain whole-buffer reference decode:
// same frames, same error, same "partial frame left" -- and never allocate
// more than the limit (run with -malloc_limit_mb to catch that).
//
//   ./workshop fuzz 600                    # ten minutes
//   build-fuzz/tests/fuzz_decoder -max_total_time=3600 -malloc_limit_mb=16 \
//       tests/fuzz_corpus                  # longer, growing the corpus
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "frame.hpp"

namespace {

struct Reference {
    std::vector<std::string> frames;
    bool failed = false;
    bool partial = false;
};

Reference reference_decode(const std::string& stream, std::uint32_t max_frame) {
    Reference r;
    std::size_t pos = 0;
    while (stream.size() - pos >= 4) {
        const auto* p = reinterpret_cast<const unsigned char*>(stream.data() + pos);
        const std::uint32_t n = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                                (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
        if (n > max_frame) {
            r.failed = true;
            return r;
        }
        if (stream.size() - pos - 4 < n) break;
        r.frames.push_back(stream.substr(pos + 4, n));
        pos += 4 + n;
    }
    r.partial = pos < stream.size();
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider input(data, size);
    const auto max_frame = input.ConsumeIntegralInRange<std::uint32_t>(0, 1 << 20);
    std::minstd_rand chunker(input.ConsumeIntegral<std::uint32_t>());
    const std::string stream = input.ConsumeRemainingBytesAsString();

    frame::Decoder decoder(max_frame);
    std::vector<std::string> frames;
    for (std::size_t pos = 0; pos < stream.size();) {
        const std::size_t chunk = 1 + chunker() % 300;
        decoder.feed(std::string_view(stream).substr(pos, chunk));
        pos += chunk;
        while (auto f = decoder.next())
            frames.push_back(std::move(*f));
    }

    const Reference expected = reference_decode(stream, max_frame);
    if (frames != expected.frames || decoder.failed() != expected.failed ||
        (!expected.failed && decoder.mid_frame() != expected.partial)) {
        std::abort();  // libFuzzer saves the input that got here
    }
    return 0;
}
