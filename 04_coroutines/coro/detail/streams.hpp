// Internals of coro/streams.hpp: what readers read from and writers write to.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "../runtime.hpp"
#include "buffer.hpp"

namespace coro::detail {

// What a StreamReader reads from: the bytes received and not consumed yet,
// and who waits for more. A libuv stream and a file fill it their own way.
struct Source {
    net::OutputBuffer buffer;  // common/buffer.hpp's byte queue: consume is O(1)
    bool eof = false;
    int error = 0;  // libuv's code, after a failed read (or one that could not start)
    std::size_t line_limit = 64 * 1024;  // the longest line read_line() takes
    WaitList readers;

    virtual ~Source() = default;
    virtual void want_more() = 0;                        // start reading, if not already
    void received(std::string_view bytes, int status) {  // from callbacks
        buffer.append(bytes);
        eof = eof || status == UV_EOF;
        if (status < 0 && status != UV_EOF) error = status;
        readers.wake_all();
    }
};

// A libuv stream (a TCP socket, a listener, stdin as a tty or pipe) and what
// its reader and writer share. Its Handle is on the heap; the Stream closes
// it when the last reader or writer lets go.
struct Stream : Source, std::enable_shared_from_this<Stream> {
    Handle* handle;  // null once closing
    bool reading = false, flushing = false, closed = false;
    // What is written goes into `pending`, one growing buffer, however small
    // the writes: one uv_write per write would cost a request each, which
    // buffered() does not count. At most one uv_write is in flight, with the
    // bytes in `in_flight`: libuv reads them until its callback, so nothing
    // is appended to that string meanwhile. Then the next write takes all
    // that is pending. So a stream holds about twice what it queues, at most.
    std::string pending, in_flight;
    std::size_t high_water = 64 * 1024, low_water = 16 * 1024;
    int write_error = 0;
    // write_eof() or close() came: no more writes, and the end of stream goes
    // out after every byte written before -- then the handle closes, if
    // close() asked for it.
    bool ending = false, close_when_ended = false;
    WaitList drainers, closers;
    std::function<void(std::size_t)> on_written;

    explicit Stream(Handle* h);
    ~Stream() override;
    void want_more() override;
    void stop_reading() {
        if (reading && handle) uv_read_stop(handle->stream());
        reading = false;
    }
    std::size_t queued() const { return pending.size() + in_flight.size(); }
    void write(std::string_view bytes);  // copies them into `pending`
    void shutdown(bool then_close);      // end of stream after what is queued
    void close();                        // stop reading; shutdown, then abort
    void abort();                        // close the handle now
    std::string address(bool peer) const;

  private:
    void flush();  // hands `pending` to libuv, unless a write is in flight
    void send_shutdown();
    void write_failed(int rc);
};
std::shared_ptr<Stream> tcp_stream();
Task<void> wait_closed(std::shared_ptr<Stream> s);

// stdin as a regular file: read on the thread pool, a chunk each time a
// reader wants more.
struct FileSource final : Source, std::enable_shared_from_this<FileSource> {
    std::int64_t offset = 0;
    bool pending = false;
    void want_more() override;
};

}  // namespace coro::detail
