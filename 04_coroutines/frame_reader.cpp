#include "frame_reader.hpp"

namespace frame {

coro::Coroutine<std::optional<std::string>> FrameReader::next() {
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
        if (reader_.at_eof()) {
            if (decoder_.mid_frame())
                throw coro::IncompleteReadError(decoder_.partial_bytes(), decoder_.partial_needs());
            co_return std::nullopt;  // a clean end between frames
        }
        // An idle connection waits here: on the stream's wait list, with no
        // frame of its own. The bytes that wake it are in the buffer.
        co_await reader_.wait_for_data();
    }
}

}  // namespace frame
