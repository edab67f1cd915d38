#include "frame_reader.hpp"

namespace frame {

FrameReader::Next FrameReader::next() {
    return Next(*this, decoder_.ready() || decode());  // (no decoding while a frame is queued)
}

bool FrameReader::read_on() {
    reader_.resume_reading();
    return !reader_.exception();
}

bool FrameReader::decode() {
    if (const std::string_view bytes = reader_.buffered(); !bytes.empty()) {
        // Straight from the stream's buffer into the decoder.
        if (on_bytes) on_bytes(bytes.size());
        decoder_.feed(bytes);
        reader_.consume(bytes.size());
    }
    return decoder_.ready() || decoder_.failed() || reader_.at_eof() || reader_.exception();
}

std::optional<std::string> FrameReader::take() {
    if (auto payload = decoder_.next()) return payload;
    if (decoder_.failed()) throw FrameError(decoder_.error());
    if (std::exception_ptr e = reader_.exception()) std::rethrow_exception(e);
    if (decoder_.mid_frame())
        throw coro::IncompleteReadError(decoder_.partial_bytes(), decoder_.partial_needs());
    return std::nullopt;  // a clean end between frames
}

}  // namespace frame
