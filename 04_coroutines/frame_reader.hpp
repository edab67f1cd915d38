// Frames from a coro::StreamReader, through the shared sans-I/O decoder
// (common/frame.hpp) -- our wire protocol on top of the generic streams:
//
//   frame::FrameReader frames(reader, max_frame);
//   while (auto payload = co_await frames.next()) { ... }
//
// next() ends (nullopt) at a clean end of stream between frames; it throws
// coro::IncompleteReadError for a stream that ends mid-frame and FrameError
// for a frame over the limit. Cancelling it loses nothing: bytes stay in the
// stream's buffer or the decoder.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "coro/streams.hpp"
#include "frame.hpp"

namespace frame {

// A frame over the --max-frame limit.
struct FrameError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class FrameReader {
  public:
    explicit FrameReader(coro::StreamReader reader, std::uint32_t max_frame = default_max_frame)
        : reader_(std::move(reader)), decoder_(max_frame) {}
    coro::Coroutine<std::optional<std::string>> next();
    // Called with the number of bytes handed to the decoder (for tracing).
    std::function<void(std::size_t)> on_bytes;

  private:
    coro::StreamReader reader_;
    Decoder decoder_;
};

}  // namespace frame
