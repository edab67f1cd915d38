// Streams, shaped like asyncio's: open_connection and start_server hand out a
// StreamReader and a StreamWriter per connection.
//
//   auto [reader, writer] = co_await open_connection("127.0.0.1", 1234);
//   writer.write(frame::encode("hello"));
//   co_await writer.drain();              // wait if the peer reads slowly
//   std::string header = co_await reader.read_exactly(4);
//   writer.close();
//   co_await writer.wait_closed();
//
// Under the hood each connection is one libuv handle on the heap
// (detail::StreamState), shared by its reader and writer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "frame.hpp"
#include "runtime.hpp"

namespace coro {

// read_exactly() reached the end of the stream first. `partial` holds what
// did arrive, as asyncio.IncompleteReadError does.
struct IncompleteReadError : std::runtime_error {
    IncompleteReadError(std::string partial_bytes, std::size_t expected_bytes);
    std::string partial;
    std::size_t expected;
};

// A libuv error on a connection (reset, refused...); `code` is libuv's.
struct ConnectionError : std::runtime_error {
    ConnectionError(const std::string& what, int uv_code);
    int code;
};

// A frame over the --max-frame limit.
struct FrameError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace detail {
struct StreamState;
}

class StreamReader {
  public:
    StreamReader() = default;
    explicit StreamReader(std::shared_ptr<detail::StreamState> state) : s_(std::move(state)) {}

    // Up to `max` bytes, as soon as there are any; empty at end of stream.
    Task<std::string> read(std::size_t max = 64 * 1024);
    // Exactly n bytes, or IncompleteReadError if the stream ends first.
    Task<std::string> read_exactly(std::size_t n);
    // The next line without its newline; nullopt at end of stream.
    Task<std::optional<std::string>> read_line();
    bool at_eof() const;

    // For readers that parse in place (FrameReader): wait until some bytes
    // are buffered (false: end of stream), look at them, consume them.
    Task<bool> fill();
    std::string_view buffered() const;
    void consume(std::size_t n);
    // The same wait without a coroutine frame of its own -- what an idle
    // connection waits in, so it should cost little: co_await wait() returns
    // once more bytes arrived, or the stream ended (ended() then says so).
    detail::ParkAwaiter wait();
    bool ended() const;  // nothing buffered and nothing more to come; throws on a read error
    // While nothing is buffered: hand the next read's bytes to `take` as they
    // arrive, instead of buffering them -- one copy less (stage 03 decodes
    // straight from libuv's buffer too). Once only; nullptr withdraws it.
    void hand_next_read_to(std::function<void(std::string_view)> take);

  private:
    Task<bool> more();  // wait until more bytes are buffered; false at end of stream
    std::shared_ptr<detail::StreamState> s_;
};

class StreamWriter {
  public:
    StreamWriter() = default;
    explicit StreamWriter(std::shared_ptr<detail::StreamState> state) : s_(std::move(state)) {}

    // Queue bytes for writing; returns at once. The bytes are copied (or, for
    // the shared_ptr overload, shared: one buffer for many receivers).
    void write(std::string_view bytes);
    void write(std::shared_ptr<const std::string> bytes);
    // Waits until the queue is below the low-water mark, if it is above the
    // high-water mark -- so a fast writer cannot queue without bound. Returns
    // at once if the stream is closed (and throws if a write failed).
    Task<void> drain();
    std::size_t buffered() const;  // queued bytes not yet written
    // asyncio's transport.set_write_buffer_limits (default 64 KiB and 16 KiB).
    void set_write_buffer_limits(std::size_t high, std::size_t low);

    void write_eof();  // half-close: the peer reads end of stream
    void close();      // stop reading; write what is queued; then close
    void abort();      // close now, dropping what is queued
    bool is_closing() const;
    // Called with the size of each completed write (for tracing).
    void on_written(std::function<void(std::size_t)> observer);
    Task<void> wait_closed();
    std::string peer() const;

  private:
    std::shared_ptr<detail::StreamState> s_;
};

struct Connection {
    StreamReader reader;
    StreamWriter writer;
};

Task<Connection> open_connection(std::string host, std::uint16_t port);

// A listening socket that starts handler(reader, writer) for each connection,
// as a task of the TaskGroup given to start_server: whoever owns the group
// can wait for (or cancel) every connection.
class Server {
  public:
    using Handler = std::function<Task<void>(StreamReader, StreamWriter)>;
    struct State;
    explicit Server(std::shared_ptr<State> state) : s_(std::move(state)) {}

    std::string address() const;  // "127.0.0.1:1234" or "[::1]:1234"
    void close();                 // stop accepting (connections already made go on)
    Task<void> wait_closed();

  private:
    std::shared_ptr<State> s_;
};

Task<Server> start_server(Server::Handler handler, std::string host, std::uint16_t port,
                          TaskGroup connections = {});

// Standard input as a stream, whatever it is: a terminal, a pipe, or a
// regular file (read with uv_fs_read, since a file cannot be polled).
StreamReader open_stdin();

// Frames from a reader, through the shared sans-I/O decoder:
//   while (auto frame = co_await frames.next()) { ... }
// ends (nullopt) at a clean end of stream between frames; throws
// IncompleteReadError for a stream that ends mid-frame, FrameError over the limit.
class FrameReader {
  public:
    FrameReader(StreamReader reader, std::uint32_t max_frame = frame::default_max_frame)
        : reader_(std::move(reader)), decoder_(max_frame) {}
    Task<std::optional<std::string>> next();
    // Called with the number of bytes each read brought (for tracing).
    std::function<void(std::size_t)> on_bytes;

  private:
    StreamReader reader_;
    frame::Decoder decoder_;
};

}  // namespace coro
