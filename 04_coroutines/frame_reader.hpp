// Frames from a coro::StreamReader, through the shared sans-I/O decoder
// (common/frame.hpp) -- our wire protocol on top of the generic streams:
//
//   frame::FrameReader frames(reader, max_frame);
//   while (auto payload = co_await frames.next()) { ... }
//
// next() ends (nullopt) at a clean end of stream between frames; it throws
// coro::IncompleteReadError for a stream that ends mid-frame, FrameError for
// a frame over the limit, and coro::ConnectionError after a failed read.
// Cancelling it loses nothing: bytes stay in the stream's buffer or this
// FrameReader's decoder (go on reading with the same FrameReader).
//
// next() is an awaiter, not a coroutine: an idle connection waits in it with
// no coroutine frame of its own, only this awaiter in the caller's frame.
// Each time bytes arrive it feeds them to the decoder, and it lets the task
// be woken only once a whole frame is in (or the stream has ended). So the
// decoding, and on_bytes, run in the read callback, outside the task's steps.
// It reads nothing while a frame is queued: a task that stops asking for
// frames holds its peer back (backpressure).
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

    class Next;
    Next next();  // co_await it: the next payload, or nullopt at the end
    // Called with the number of bytes handed to the decoder (for tracing).
    std::function<void(std::size_t)> on_bytes;

  private:
    bool decode();   // feeds the decoder what is buffered; true once next() need not wait
    bool read_on();  // resumes reading; false if it failed (take() throws then)
    std::optional<std::string> take();  // the payload, the end, or the error
    coro::StreamReader reader_;
    Decoder decoder_;
};

// ANCHOR: next-awaiter
class FrameReader::Next : public coro::WaitList::Waiter {
  public:
    Next(FrameReader& frames, bool ready)
        : Waiter(frames.reader_.waiters(), ready), frames_(frames) {}
    // No frame yet: read on (reading stops while the task does other work
    // and bytes pile up unconsumed), then wait on the stream's list.
    bool await_suspend(std::coroutine_handle<> h) {
        if (!frames_.read_on()) return false;  // a read that cannot even start
        return Waiter::await_suspend(h);
    }
    // Bytes arrived, or the end: decode, in whatever woke us (the read
    // callback, mostly); wake the task only if there is something for it.
    bool woken() noexcept override { return frames_.decode() || !frames_.read_on(); }
    std::optional<std::string> await_resume() {
        Waiter::await_resume();  // CancelledError, if cancelled
        return frames_.take();
    }

  private:
    FrameReader& frames_;
};
// ANCHOR_END: next-awaiter

}  // namespace frame
