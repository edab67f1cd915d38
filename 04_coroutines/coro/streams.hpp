// coro/streams.hpp -- TCP streams shaped like asyncio's: open_connection and
// start_server hand out a StreamReader and a StreamWriter per connection.
//
//   auto [reader, writer] = co_await open_connection("127.0.0.1", 1234);
//   writer.write("hello\n");
//   co_await writer.drain();                  // waits if the peer reads slowly
//   std::optional<std::string> line = co_await reader.read_line();
//   writer.close();
//   co_await writer.wait_closed();
//
// Every wait is cancellable and loses nothing: bytes that arrive after a
// cancelled read stay buffered for the next one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "detail/streams.hpp"
#include "runtime.hpp"

namespace coro {

// read_exactly() met the end of the stream first; `partial` is what came.
struct IncompleteReadError : std::runtime_error {
    IncompleteReadError(std::string partial_bytes, std::size_t expected_bytes)
        : std::runtime_error("stream ended after " + std::to_string(partial_bytes.size()) + " of " +
                             std::to_string(expected_bytes) + " bytes"),
          partial(std::move(partial_bytes)),
          expected(expected_bytes) {}
    std::string partial;
    std::size_t expected;
};

// read_line() found no end of line within the reader's limit (asyncio's
// LimitOverrunError). The bytes stay buffered, as in asyncio's readuntil():
// the caller may read() or consume() them, or give up and close. `consumed`
// is how many bytes the line takes, the newline included (or how many are
// buffered, if no newline came yet).
struct LimitOverrunError : std::runtime_error {
    LimitOverrunError(const std::string& what, std::size_t consumed_bytes)
        : std::runtime_error(what), consumed(consumed_bytes) {}
    std::size_t consumed;
};

// A libuv error on a connection (reset, refused...); `code` is libuv's.
struct ConnectionError : std::runtime_error {
    ConnectionError(const std::string& what, int uv_code)
        : std::runtime_error(what), code(uv_code) {}
    int code;
};

class StreamReader {
  public:
    StreamReader() = default;
    explicit StreamReader(std::shared_ptr<detail::Source> s) : s_(std::move(s)) {}

    Task<std::string> read(std::size_t max = 64 * 1024);  // some bytes; empty at the end
    Task<std::string> read_exactly(std::size_t n);        // or IncompleteReadError
    // Without '\n'; nullopt at the end. LimitOverrunError past the limit.
    Task<std::optional<std::string>> read_line();
    // The longest line read_line() takes (asyncio's `limit`, 64 KiB by default).
    void set_limit(std::size_t bytes) { s_->line_limit = bytes; }
    bool at_eof() const { return s_->eof && s_->buffer.empty(); }

    // For parsers that work on the buffer in place (the server's FrameReader):
    std::string_view buffered() const { return s_->buffer.pending(); }
    void consume(std::size_t n) { s_->buffer.consume(n); }  // O(1): an offset moves
    Task<bool> fill();  // until something is buffered; false at the end
    // The same wait with no coroutine frame of its own -- what an idle
    // connection waits in, so it costs little: returns once more bytes came
    // or the stream ended (ended() says which).
    detail::Parked wait() {
        s_->want_more();
        // Nothing more can come (the end, or a read that could not even
        // start): no wait, or nothing would ever wake us.
        return detail::park(s_->readers, s_->eof || s_->error != 0);
    }
    bool ended() const;  // at_eof(), or ConnectionError after a failed read

  private:
    Task<bool> more();  // until more bytes are buffered; false at the end
    std::shared_ptr<detail::Source> s_;
};

class StreamWriter {
  public:
    StreamWriter() = default;
    explicit StreamWriter(std::shared_ptr<detail::Stream> s) : s_(std::move(s)) {}

    // Queues a copy of the bytes and returns at once. Dropped once the stream
    // is closing, after write_eof(), or after a write failed.
    void write(std::string_view bytes) { s_->write(bytes); }
    // Above the high-water mark, waits until the queue is down to the low one,
    // so a fast writer cannot queue without bound. At once if the stream is
    // closed; ConnectionError if a write failed.
    Task<void> drain();
    std::size_t buffered() const { return s_->queued(); }  // not written yet
    // asyncio's transport.set_write_buffer_limits (default 64 KiB and 16 KiB).
    void set_write_buffer_limits(std::size_t high, std::size_t low) {
        s_->high_water = high;
        s_->low_water = std::min(low, high);
    }
    void write_eof() { s_->shutdown(false); }  // half-close: the peer reads end of stream
    void close() { s_->close(); }              // stop reading, write what is queued, close
    void abort() { s_->abort(); }              // close now, dropping what is queued
    bool is_closing() const { return !s_->handle || s_->flushing; }
    Task<void> wait_closed() { return detail::wait_closed(s_); }
    // Called with the size of each completed write (for tracing).
    void on_written(std::function<void(std::size_t)> f) { s_->on_written = std::move(f); }
    std::string peer() const { return s_->address(true); }    // "127.0.0.1:5555", or "?"
    std::string local() const { return s_->address(false); }  // our end of it

  private:
    std::shared_ptr<detail::Stream> s_;
};

struct Connection {
    StreamReader reader;
    StreamWriter writer;
};

// Connects to host:port (IPv4 or IPv6); ConnectionError says why not.
Task<Connection> open_connection(std::string host, std::uint16_t port);

// A listening socket that runs handler(reader, writer) for each connection
// as a task of the TaskGroup given to start_server: whoever owns the group
// waits for (or cancels) every connection.
class Server {
  public:
    using Handler = std::function<Task<void>(StreamReader, StreamWriter)>;
    struct State;
    explicit Server(std::shared_ptr<State> s);

    std::string address() const;  // "127.0.0.1:1234" or "[::1]:1234"
    void close();                 // stop accepting; connections go on
    Task<void> wait_closed();

  private:
    std::shared_ptr<State> s_;
};

Task<Server> start_server(Server::Handler handler, std::string host, std::uint16_t port,
                          TaskGroup connections = {});

// Standard input as a stream: a tty or a pipe (a libuv stream), or a regular
// file (read on the thread pool with uv_fs_read: a file cannot be polled).
StreamReader open_stdin();

}  // namespace coro
