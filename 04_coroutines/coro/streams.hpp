// coro/streams.hpp -- TCP streams shaped like asyncio's: open_connection and
// start_server hand out a StreamReader and a StreamWriter per connection.
//
//   auto [reader, writer] = co_await open_connection("127.0.0.1", 1234);
//   writer.write("hello\n");
//   co_await writer.drain();                  // waits if the peer reads slowly
//   std::string line = co_await reader.readline();  // "" at the end
//   writer.close();
//   co_await writer.wait_closed();
//
// The end of the stream, as in asyncio: read() and readline() return "",
// readexactly() throws IncompleteReadError. A failed read or write throws
// ConnectionError. Every wait is cancellable and loses nothing: bytes that
// arrive after a cancelled read stay buffered for the next one.
//
// Reading path, step 6 (README.md): a read, from co_await to libuv and back.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "task.hpp"
#include "wait.hpp"

namespace coro {

// The stream ended after `got` of the `expected` bytes; `partial` holds them
// (when the reader kept them).
struct IncompleteReadError : std::runtime_error {
    IncompleteReadError(std::size_t got, std::size_t expected, std::string partial_bytes = {})
        : std::runtime_error("stream ended after " + std::to_string(got) + " of " +
                             std::to_string(expected) + " bytes"),
          partial(std::move(partial_bytes)),
          expected(expected) {}
    std::string partial;
    std::size_t expected;
};

// readline() found no end of line within the reader's limit. The bytes stay
// buffered, as in asyncio: the caller may read() them, or close. `consumed`
// is how many bytes the line takes, its '\n' included (or how many are
// buffered, if no '\n' came yet).
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

namespace detail {
struct Source;  // what a reader reads from (streams.cpp)
struct Stream;  // a libuv stream: what a reader and a writer share
struct Open;    // makes readers, writers and servers (streams.cpp)
}  // namespace detail

class StreamReader {
  public:
    StreamReader() = default;

    Coroutine<std::string> read(std::size_t n = 64 * 1024);  // 1 to n bytes; "" at the end
    Coroutine<std::string> readexactly(std::size_t n);       // or IncompleteReadError
    // A line, its '\n' included (the last one may lack it); "" at the end.
    // LimitOverrunError past the limit (64 KiB unless set_limit says).
    Coroutine<std::string> readline();
    void set_limit(std::size_t bytes);
    bool at_eof() const;  // the stream has ended and nothing is left buffered

    // For a parser that works on the buffer in place (frame_reader.hpp):
    std::string_view buffered() const;  // received, not consumed yet
    void consume(std::size_t n);        // O(1): an offset moves
    // A ConnectionError once a read has failed (asyncio's exception()).
    std::exception_ptr exception() const;
    // For a parser's own awaiter, with no coroutine frame (what an idle
    // connection waits in, so it costs little): the list that arriving bytes,
    // the end or a failed read wake; and reading resumed, once it has stopped
    // because 256 KiB sat unconsumed -- call it when about to wait, not
    // before, or a reader that is behind would not hold its peer back.
    WaitList& waiters();
    void resume_reading();

  private:
    friend struct detail::Open;
    explicit StreamReader(std::shared_ptr<detail::Source> s) : s_(std::move(s)) {}
    Coroutine<bool> more();  // until more bytes are buffered; false at the end
    std::shared_ptr<detail::Source> s_;
};

// A stream whose last StreamReader and StreamWriter are dropped is aborted,
// as asyncio does with a transport nobody holds: close() and wait_closed()
// deliver what is queued.
class StreamWriter {
  public:
    StreamWriter() = default;

    // Queues a copy of the bytes and returns at once. Dropped once the stream
    // is closing, after write_eof(), or after a write failed.
    void write(std::string_view bytes);
    // Above the high-water mark, waits until the queue is down to the low one,
    // so a fast writer cannot queue without bound. ConnectionError if a write
    // failed.
    Coroutine<void> drain();
    std::size_t write_buffer_size() const;  // queued, not written yet
    // asyncio's transport.set_write_buffer_limits (default 64 KiB and 16 KiB).
    void set_write_buffer_limits(std::size_t high, std::size_t low);
    void write_eof();  // half-close: the peer reads the end of the stream
    void close();      // stop reading, write what is queued, then close
    void abort();      // close now, dropping what is queued
    bool is_closing() const;
    Coroutine<void> wait_closed();
    // Called with the size of each completed write (for tracing).
    void on_written(std::function<void(std::size_t)> callback);
    std::string peer() const;   // "127.0.0.1:5555", or "?"
    std::string local() const;  // our end of it

  private:
    friend struct detail::Open;
    explicit StreamWriter(std::shared_ptr<detail::Stream> s) : s_(std::move(s)) {}
    std::shared_ptr<detail::Stream> s_;
};

struct Connection {
    StreamReader reader;
    StreamWriter writer;
};

// Connects to host:port (IPv4 or IPv6); ConnectionError says why not.
Coroutine<Connection> open_connection(std::string host, std::uint16_t port);

// A listening socket that runs handler(reader, writer) for each connection,
// as a task of the TaskGroup given to start_server: whoever owns the group
// waits for (or cancels) every connection. (asyncio.Server)
class Server {
  public:
    using Handler = std::function<Coroutine<void>(StreamReader, StreamWriter)>;
    struct State;  // (streams.cpp)

    std::string address() const;  // "127.0.0.1:1234" or "[::1]:1234"
    void close();                 // stop accepting; connections go on
    Coroutine<void> wait_closed();

  private:
    friend struct detail::Open;
    explicit Server(std::shared_ptr<State> s) : s_(std::move(s)) {}
    std::shared_ptr<State> s_;
};

Coroutine<Server> start_server(Server::Handler handler, std::string host, std::uint16_t port,
                               TaskGroup connections = {});

// Standard input as a stream: a tty or a pipe (a libuv stream), or a regular
// file (read on the thread pool: a file cannot be polled).
StreamReader open_stdin();

}  // namespace coro
