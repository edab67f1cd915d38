#include "frame_reader.hpp"

namespace frame {

coro::Task<std::optional<std::string>> FrameReader::next() {
    while (true) {
        if (auto payload = decoder_.next()) co_return payload;
        if (decoder_.failed()) throw FrameError(decoder_.error());
        if (const std::string_view bytes = reader_.buffered(); !bytes.empty()) {
            // Straight from the stream's buffer into the decoder.
            if (on_bytes) on_bytes(bytes.size());
            decoder_.feed(bytes);
            reader_.consume(bytes.size());
            continue;
        }
        if (reader_.ended()) {
            if (decoder_.mid_frame()) throw coro::IncompleteReadError("", header_size);
            co_return std::nullopt;  // a clean end between frames
        }
        // An idle connection waits here: a park on the stream's readers, no
        // frame of its own. The bytes that wake it are in the buffer.
        co_await reader_.wait();
    }
}

}  // namespace frame
