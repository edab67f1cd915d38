// Streams on libuv: sockets, stdin, reads, writes, connect, listen.
#include "streams.hpp"

#include <unistd.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "buffer.hpp"
#include "net.hpp"
#include "uv.hpp"
#include "uv_net.hpp"

namespace coro {
namespace detail {

constexpr std::size_t read_limit = 256 * 1024;  // a socket is not read while this much is unread
constexpr std::size_t chunk = 64 * 1024;        // the most one read takes

// What a StreamReader reads from: the bytes received and not consumed yet,
// and who waits for more. A libuv stream and a file fill it their own way.
struct Source {
    net::OutputBuffer received;  // common/buffer.hpp's byte queue: consume() is O(1)
    bool eof = false;
    int error = 0;  // libuv's code, after a failed read (or one that could not start)
    std::size_t line_limit = 64 * 1024;
    WaitList readers;

    virtual ~Source() = default;
    virtual void want_more() = 0;                       // start reading, if not already
    void arrived(std::string_view bytes, int status) {  // from callbacks
        received.append(bytes);
        eof = eof || status == UV_EOF;
        if (status < 0 && status != UV_EOF) error = status;
        readers.wake_all();
    }
};

// A libuv stream (a TCP socket, a listener, stdin as a tty or pipe) and what
// its reader and writer share. The handle is in the same object (StreamOf,
// below), and so are its buffers: one allocation per connection. When the
// last reader or writer lets go, release() closes the handle, and the memory
// goes in the close callback (rule 1).
struct Stream : Source, HandleOwner, std::enable_shared_from_this<Stream> {
    uv_stream_t* handle;              // null once closing
    std::shared_ptr<Stream> closing;  // ourselves, while libuv closes the handle
    bool reading = false, flushing = false, closed = false;
    // What is written goes into `pending`, one growing buffer, however small
    // the writes: one uv_write per write would cost a request each. At most
    // one uv_write is in flight, with the bytes in `in_flight`: libuv reads
    // them until its callback, so nothing is appended to that string
    // meanwhile. Then the next write takes all that is pending. So a stream
    // holds about twice what it queues, at most.
    std::string pending, in_flight;
    std::size_t high_water = 64 * 1024, low_water = 16 * 1024;
    int write_error = 0;
    // write_eof() or close() came: no more writes, and the end of stream goes
    // out after every byte written before -- then the handle closes, if
    // close() asked for it.
    bool ending = false, close_when_ended = false;
    WaitList drainers;  // drain() and wait_closed(): each checks what it waits for
    std::function<void(std::size_t)> on_written;

    explicit Stream(uv_stream_t* h) : handle(h) {}
    static void release(Stream* s);  // the shared_ptr's deleter
    void close_handle() override { abort(); }
    void want_more() override;
    void stop_reading() {
        if (reading && handle) uv_read_stop(handle);
        reading = false;
    }
    std::size_t queued() const { return pending.size() + in_flight.size(); }
    void write(std::string_view bytes);
    void shutdown(bool then_close);  // end of stream after what is queued
    void close();                    // stop reading; shutdown, then abort
    void abort();                    // close the handle now
    std::string address(bool peer) const;

  private:
    void flush();  // hands `pending` to libuv, unless a write is in flight
    void send_shutdown();
    void write_failed(int rc);
};

// Write requests, kept for the next write once done: a busy server makes one
// per write, and malloc is not free. (At most `spares` kept, per thread:
// 192 KiB.)
constexpr std::size_t spares = 1024;
thread_local std::vector<std::unique_ptr<uv_write_t>> spare_writes;

uv_write_t* take_write_request() {
    if (spare_writes.empty()) return new uv_write_t;
    uv_write_t* req = spare_writes.back().release();
    spare_writes.pop_back();
    return req;
}

void give_back(uv_write_t* req) {
    if (spare_writes.size() < spares) {
        spare_writes.emplace_back(req);
    } else {
        delete req;
    }
}

// A stream and its handle, of one of libuv's stream types (uv_tcp_t...).
template <typename H>
struct StreamOf : Stream {
    H uv{};
    StreamOf() : Stream(reinterpret_cast<uv_stream_t*>(&uv)) {
        uv.data = static_cast<HandleOwner*>(this);  // (once `uv` is made: H uv{} zeroes it)
    }
};

template <typename S>
std::shared_ptr<S> make_stream() {
    return std::shared_ptr<S>(new S, &Stream::release);
}

void Stream::release(Stream* s) {
    if (!s->handle) return delete s;  // closed (while closing, `closing` holds us)
    uv_close(reinterpret_cast<uv_handle_t*>(std::exchange(s->handle, nullptr)),
             [](uv_handle_t* h) { delete holder_of<Stream>(h); });
}

// ANCHOR: read-callback
void Stream::want_more() {
    if (reading || eof || error || !handle) return;
    auto alloc = [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
        thread_local char scratch[chunk];  // copied out before the next read
        *buf = uv_buf_init(scratch, sizeof scratch);
    };
    auto on_read = [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* self = holder_of<Stream>(s);
        if (n == 0) return;  // nothing this time (EAGAIN)
        if (n < 0 || self->received.size() + static_cast<std::size_t>(n) >= read_limit)
            self->stop_reading();  // the end; or backpressure: the reader is behind
        // Buffer the bytes and wake the readers -- onto the ready queue.
        self->arrived({buf->base, static_cast<std::size_t>(std::max<ssize_t>(n, 0))},
                      static_cast<int>(std::min<ssize_t>(n, 0)));
    };
    error = uv_read_start(handle, alloc, on_read);
    reading = error == 0;
}
// ANCHOR_END: read-callback

void Stream::write(std::string_view bytes) {
    if (!handle || ending || write_error || bytes.empty()) return;  // see StreamWriter::write
    pending.append(bytes);
    flush();
}

void Stream::flush() {
    if (!in_flight.empty() || pending.empty() || !handle || write_error) return;
    std::swap(in_flight, pending);  // (pending is empty now)
    // libuv reads `in_flight` until the callback, whatever the task that
    // wrote it does meanwhile, even if it is cancelled and gone: the stream
    // outlives the request, since its memory goes only in the close
    // callback, and libuv calls back every write (UV_ECANCELED) before that.
    uv_write_t* req = take_write_request();
    req->data = this;
    uv_buf_t buf = uv_buf_init(in_flight.data(), static_cast<unsigned>(in_flight.size()));
    const int rc = uv_write(req, handle, &buf, 1, [](uv_write_t* done, int status) {
        Stream& s = *static_cast<Stream*>(done->data);
        give_back(done);
        const std::size_t n = s.in_flight.size();
        // Keep a small buffer for the next write; give a big one back, so a
        // burst does not pin its memory for the life of the connection.
        if (s.in_flight.capacity() > chunk) {
            s.in_flight = std::string();
        } else {
            s.in_flight.clear();
        }
        if (status == 0) {
            // (Closing, libuv tells now of a write done before: nobody to tell.)
            if (s.on_written && s.handle) s.on_written(n);
            s.flush();                        // the next write: everything written meanwhile
        } else if (status != UV_ECANCELED) {  // (cancelled: the handle is closing)
            s.write_failed(status);
        }
        if (s.queued() <= s.low_water || s.write_error) s.drainers.wake_all();
    });
    if (rc != 0) {
        give_back(req);
        return write_failed(rc);
    }
    // write_eof() or close() came while these were pending: the end of stream
    // goes after them (libuv keeps the order of a stream's requests).
    if (ending) send_shutdown();
}

// After a failed write (reset, broken pipe) nothing queued can go out: drop
// it, wake the drainers at once (drain() throws), and close if close() waits.
void Stream::write_failed(int rc) {
    if (!write_error) write_error = rc;
    pending.clear();
    in_flight.clear();  // (libuv has let go of it: its callback ran, or it never took it)
    drainers.wake_all();
    if (close_when_ended) abort();
}

void Stream::shutdown(bool then_close) {
    if (!handle) return;
    close_when_ended = close_when_ended || then_close;
    // Asked already (write_eof() then close()): that shutdown closes too.
    if (std::exchange(ending, true)) return;
    // Bytes not yet handed to libuv go first: flush() sends the shutdown
    // once it has handed them over (a write is in flight until then).
    if (pending.empty()) send_shutdown();
}

void Stream::send_shutdown() {
    struct Shutdown {  // (every request lives on the heap until its callback)
        uv_shutdown_t req;
        std::shared_ptr<Stream> stream;
    };
    auto* op = new Shutdown{.req = {}, .stream = shared_from_this()};
    op->req.data = op;
    // Its callback comes once every write handed to libuv has gone out. Read
    // close_when_ended then, not now: close() may come in between.
    if (uv_shutdown(&op->req, handle, [](uv_shutdown_t* req, int) {
            std::unique_ptr<Shutdown> done(static_cast<Shutdown*>(req->data));
            if (done->stream->close_when_ended) done->stream->abort();
        }) != 0) {
        delete op;
        if (close_when_ended) abort();
    }
}

// Like asyncio's close(): stop reading now, write what is queued, then close.
void Stream::close() {
    stop_reading();
    eof = true;
    readers.wake_all();
    if (!handle || flushing) return;
    if (queued() == 0 || write_error) return abort();
    flushing = true;
    shutdown(true);
}

void Stream::abort() {
    if (!handle) return;
    pending.clear();  // dropped; `in_flight` is libuv's until its callback (UV_ECANCELED)
    closing = shared_from_this();  // alive until libuv lets go
    // libuv calls back the writes still pending (UV_ECANCELED, or 0 for one
    // that went out meanwhile) before the close callback.
    uv_close(reinterpret_cast<uv_handle_t*>(std::exchange(handle, nullptr)), [](uv_handle_t* h) {
        auto* self = holder_of<Stream>(h);
        self->closed = self->eof = true;
        self->readers.wake_all();
        self->drainers.wake_all();
        self->closing.reset();  // may free us: nothing after this
    });
}

std::string Stream::address(bool peer) const {
    if (!handle || handle->type != UV_TCP) return "?";  // closed, or stdin
    const auto* tcp = reinterpret_cast<const uv_tcp_t*>(handle);
    return peer ? net::peer_of(tcp) : net::local_of(tcp);
}

std::shared_ptr<StreamOf<uv_tcp_t>> tcp_stream() {
    auto s = make_stream<StreamOf<uv_tcp_t>>();
    uv_tcp_init(uv_loop(), &s->uv);
    return s;
}

Coroutine<void> wait_closed(std::shared_ptr<Stream> s) {
    while (!s->closed)
        co_await s->drainers.wait();
}

// stdin as a regular file: read on the thread pool, a chunk each time a
// reader wants more.
struct FileSource final : Source, std::enable_shared_from_this<FileSource> {
    std::int64_t offset = 0;
    bool reading = false;
    void want_more() override;
};

void FileSource::want_more() {
    if (reading || eof || error) return;
    struct Read {
        uv_fs_t req;
        std::shared_ptr<FileSource> source;
        char data[chunk];
    };
    auto* op = new Read{.req = {}, .source = shared_from_this(), .data = {}};
    op->req.data = op;
    uv_buf_t buf = uv_buf_init(op->data, sizeof op->data);
    reading = true;
    uv_fs_read(uv_loop(), &op->req, STDIN_FILENO, &buf, 1, offset, [](uv_fs_t* req) {
        std::unique_ptr<Read> done(static_cast<Read*>(req->data));
        const auto n = static_cast<int>(req->result);  // bytes, 0 at the end, or an error
        uv_fs_req_cleanup(req);
        FileSource& self = *done->source;
        self.reading = false;
        self.offset += std::max(n, 0);
        self.arrived({done->data, static_cast<std::size_t>(std::max(n, 0))},
                     n == 0 ? UV_EOF : std::min(n, 0));
    });
}

// The readers, writers and servers above, handed out (their constructors are
// private: nothing outside coro/ needs to know what they hold).
struct Open {
    static StreamReader reader(std::shared_ptr<Source> s) { return StreamReader(std::move(s)); }
    static StreamWriter writer(std::shared_ptr<Stream> s) { return StreamWriter(std::move(s)); }
    static Server server(std::shared_ptr<Server::State> s) { return Server(std::move(s)); }
};

}  // namespace detail

// ---------------------------------------------------------------------------
// StreamReader

std::string_view StreamReader::buffered() const {
    return s_->received.pending();
}
void StreamReader::consume(std::size_t n) {
    s_->received.consume(n);
}
bool StreamReader::at_eof() const {
    return s_->eof && s_->received.empty();
}
void StreamReader::set_limit(std::size_t bytes) {
    s_->line_limit = bytes;
}

std::exception_ptr StreamReader::exception() const {
    if (!s_->error) return nullptr;
    return std::make_exception_ptr(ConnectionError(uv_strerror(s_->error), s_->error));
}

WaitList& StreamReader::waiters() {
    return s_->readers;
}
void StreamReader::resume_reading() {
    s_->want_more();
}

// Until more bytes are buffered; false once none can come (the end, or a
// failed read: then ConnectionError).
Coroutine<bool> StreamReader::more() {
    const std::size_t before = s_->received.size();
    while (s_->received.size() == before && !s_->eof && !s_->error) {
        s_->want_more();  // (a read that cannot start sets error: no wait)
        co_await s_->readers.wait_unless(s_->error != 0);
    }
    if (std::exception_ptr e = exception()) std::rethrow_exception(e);
    co_return s_->received.size() > before;
}

Coroutine<std::string> StreamReader::read(std::size_t n) {
    if (s_->received.empty() && !co_await more()) co_return std::string();
    std::string bytes(buffered().substr(0, n));
    consume(bytes.size());
    co_return bytes;
}

Coroutine<std::string> StreamReader::readexactly(std::size_t n) {
    while (s_->received.size() < n) {
        if (co_await more()) continue;
        std::string partial(buffered());
        consume(partial.size());
        throw IncompleteReadError(partial.size(), n, std::move(partial));
    }
    std::string bytes(buffered().substr(0, n));
    consume(n);
    co_return bytes;
}

Coroutine<std::string> StreamReader::readline() {
    const std::size_t limit = s_->line_limit;
    std::size_t scanned = 0;  // no byte is looked at twice
    std::size_t end;
    while ((end = buffered().find('\n', scanned)) == std::string_view::npos) {
        scanned = s_->received.size();
        // Without a limit, a peer that never sends '\n' would make us buffer
        // without bound (reading stops at read_limit, but more() restarts it).
        if (scanned > limit) throw LimitOverrunError("no end of line within the limit", scanned);
        if (co_await more()) continue;
        if (s_->received.empty()) co_return std::string();  // the end
        end = s_->received.size() - 1;                      // a last line without '\n'
        break;
    }
    if (end > limit) throw LimitOverrunError("line longer than the limit", end + 1);
    std::string line(buffered().substr(0, end + 1));
    consume(line.size());
    co_return line;
}

// ---------------------------------------------------------------------------
// StreamWriter

void StreamWriter::write(std::string_view bytes) {
    s_->write(bytes);
}
std::size_t StreamWriter::write_buffer_size() const {
    return s_->queued();
}
void StreamWriter::set_write_buffer_limits(std::size_t high, std::size_t low) {
    s_->high_water = high;
    s_->low_water = std::min(low, high);
}
void StreamWriter::write_eof() {
    s_->shutdown(false);
}
void StreamWriter::close() {
    s_->close();
}
void StreamWriter::abort() {
    s_->abort();
}
bool StreamWriter::is_closing() const {
    return !s_->handle || s_->flushing;
}
Coroutine<void> StreamWriter::wait_closed() {
    return detail::wait_closed(s_);
}
void StreamWriter::on_written(std::function<void(std::size_t)> callback) {
    s_->on_written = std::move(callback);
}
std::string StreamWriter::peer() const {
    return s_->address(true);
}
std::string StreamWriter::local() const {
    return s_->address(false);
}

Coroutine<void> StreamWriter::drain() {
    detail::Stream& s = *s_;
    if (s.queued() > s.high_water) {
        while (s.queued() > s.low_water && !s.write_error && s.handle)
            co_await s.drainers.wait();
    }
    if (s.write_error) throw ConnectionError(uv_strerror(s.write_error), s.write_error);
}

// ---------------------------------------------------------------------------
// open_connection, start_server, open_stdin

Coroutine<Connection> open_connection(std::string host, std::uint16_t port) {
    const sockaddr_storage addr = net::resolve(host, port, false);
    const auto* a = reinterpret_cast<const sockaddr*>(&addr);
    auto stream = detail::tcp_stream();
    // libuv calls back even if we stop waiting (UV_ECANCELED, once the handle
    // is closed): the request lives on the heap until then.
    using Connect = Request<uv_connect_t, int>;
    auto op = std::make_unique<Connect>();
    Future<int> status = op->future;
    int rc = uv_tcp_connect(&op->req, &stream->uv, a, [](uv_connect_t* req, int st) {
        Connect::owner(req)->future.set_result(st);
    });
    if (rc == 0) {
        op.release();
        rc = co_await status;  // cancelled: release() closes the handle
    }
    if (rc < 0) {
        throw ConnectionError(
            fmt::format("cannot connect to {}: {}", net::format_address(a), uv_strerror(rc)), rc);
    }
    uv_tcp_nodelay(&stream->uv, 1);
    co_return Connection{detail::Open::reader(stream), detail::Open::writer(stream)};
}

// A listener is a Stream too: the same handle ownership, close and wait_closed.
struct Server::State : detail::StreamOf<uv_tcp_t> {
    Handler handler;
    TaskGroup connections;
};

std::string Server::address() const {
    return s_->address(false);
}
void Server::close() {
    s_->abort();
}
Coroutine<void> Server::wait_closed() {
    return detail::wait_closed(s_);
}

Coroutine<Server> start_server(Server::Handler handler, std::string host, std::uint16_t port,
                               TaskGroup connections) {
    auto s = detail::make_stream<Server::State>();
    uv_tcp_init(uv_loop(), &s->uv);
    s->handler = std::move(handler);
    s->connections = std::move(connections);
    auto on_connection = [](uv_stream_t* listener, int status) {
        auto* self = static_cast<Server::State*>(detail::holder_of<detail::Stream>(listener));
        auto stream = detail::tcp_stream();
        if (status == 0) status = uv_accept(listener, stream->handle);
        if (status != 0) {
            fmt::print(stderr, "accept: {}\n", uv_strerror(status));
            return;  // (the last reference goes: release() closes the handle)
        }
        uv_tcp_nodelay(&stream->uv, 1);
        // One task per connection, in the server's group: its owner waits for
        // them all. An exception a handler lets out is reported.
        self->connections.create_task(
            self->handler(detail::Open::reader(stream), detail::Open::writer(stream)));
    };
    net::listen_uv(&s->uv, host, port, on_connection);  // or throws, saying why
    co_return detail::Open::server(s);
}

StreamReader open_stdin() {
    const uv_handle_type type = uv_guess_handle(STDIN_FILENO);
    if (type != UV_TTY && type != UV_NAMED_PIPE)  // a regular file, /dev/null...
        return detail::Open::reader(std::make_shared<detail::FileSource>());
    if (type == UV_TTY) {
        auto tty = detail::make_stream<detail::StreamOf<uv_tty_t>>();
        uv_tty_init(uv_loop(), &tty->uv, STDIN_FILENO, 1);
        return detail::Open::reader(tty);
    }
    auto pipe = detail::make_stream<detail::StreamOf<uv_pipe_t>>();
    uv_pipe_init(uv_loop(), &pipe->uv, 0);
    uv_pipe_open(&pipe->uv, STDIN_FILENO);
    return detail::Open::reader(pipe);
}

}  // namespace coro
