#include "work.hpp"

#include <time.h>

#include "log.hpp"

#include <array>
#include <atomic>

namespace work {
namespace {

// 64 bytes of the payload (repeated if it is shorter; zeros for an empty
// frame): every round mixes the same amount, whatever the frame's size.
using Block = std::array<unsigned char, 64>;

Block block_of(std::string_view payload) {
    Block block{};
    for (std::size_t i = 0; !payload.empty() && i < block.size(); ++i)
        block[i] = static_cast<unsigned char>(payload[i % payload.size()]);
    return block;
}

// `count` rounds of FNV-1a over the block.
std::uint64_t mix(const Block& block, std::uint64_t count) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (std::uint64_t n = 0; n < count; ++n) {
        for (unsigned char byte : block)
            hash = (hash ^ byte) * 0x100000001b3ULL;
    }
    return hash;
}

// This thread's CPU time (POSIX; macOS has it too). Not the wall clock: a
// calibration that lost the core for a while -- another process, or on a
// virtual machine a slice the host took -- would count that time as work
// and make every frame's work short from then on.
std::chrono::nanoseconds thread_cpu_time() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}

// Rounds per microsecond on this machine, measured once (about 20 ms of
// CPU) with the same code that does the work.
double rounds_per_microsecond() {
    static const double rate = [] {
        const Block block = block_of("calibration");
        std::uint64_t rounds = 0;
        static std::atomic<std::uint64_t> sink;  // the result must be used
        const auto start = thread_cpu_time();
        auto elapsed = std::chrono::nanoseconds{};
        while (elapsed < std::chrono::milliseconds(20)) {
            sink = sink + mix(block, 1000);
            rounds += 1000;
            elapsed = thread_cpu_time() - start;
        }
        return static_cast<double>(rounds) /
               static_cast<double>(
                   std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
    }();
    return rate;
}

}  // namespace

void calibrate() {
    rounds_per_microsecond();
}

std::uint64_t crunch(std::string_view payload, std::chrono::microseconds duration) {
    // On the JSON trace's timeline: a span on the track of whichever thread
    // does the work (the loop's, or a pool thread's with --offload).
    const logs::Span span(
        "work", logs::json::active() ? fmt::format("\"bytes\":{}", payload.size()) : std::string());
    const auto rounds = static_cast<std::uint64_t>(rounds_per_microsecond() *
                                                   static_cast<double>(duration.count()));
    return mix(block_of(payload), rounds);
}

}  // namespace work
