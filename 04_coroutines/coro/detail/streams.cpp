// Streams on libuv: sockets, stdin, reads, writes, connect, listen.
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "../streams.hpp"
#include "net.hpp"
#include "uv_net.hpp"

namespace coro {
namespace detail {

constexpr std::size_t read_limit = 256 * 1024;  // a socket is not read while this much is unread
constexpr std::size_t chunk = 64 * 1024;        // the most one read takes

Stream::Stream(Handle* h) : handle(h) {
    h->owner = this;
    h->on_closed = [this] {  // run() closed it, or abort() did
        handle = nullptr;
        closed = eof = true;
        readers.wake_all();
        drainers.wake_all();
        closers.wake_all();
    };
}

Stream::~Stream() {
    if (!handle) return;
    handle->on_closed = nullptr;  // we are gone: nobody to tell
    handle->close();
}

void Stream::want_more() {
    if (reading || eof || error || !handle) return;
    auto alloc = [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
        thread_local char scratch[chunk];  // copied out before the next read
        *buf = uv_buf_init(scratch, sizeof scratch);
    };
    auto on_read = [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* self = Handle::owner_of<Stream>(s);
        if (n == 0) return;  // nothing this time (EAGAIN)
        if (n < 0 || self->buffer.size() + static_cast<std::size_t>(n) >= read_limit)
            self->stop_reading();  // the end; or backpressure: the reader is behind
        self->received({buf->base, static_cast<std::size_t>(std::max<ssize_t>(n, 0))},
                       static_cast<int>(std::min<ssize_t>(n, 0)));
    };
    error = uv_read_start(handle->stream(), alloc, on_read);
    reading = error == 0;
}

void Stream::write(std::string_view bytes) {
    if (!handle || ending || write_error || bytes.empty()) return;  // see StreamWriter::write
    pending.append(bytes);
    flush();
}

void Stream::flush() {
    if (!in_flight.empty() || pending.empty() || !handle || write_error) return;
    std::swap(in_flight, pending);  // (pending is empty now)
    // The request owns itself and keeps the stream -- and so `in_flight` --
    // alive until its callback: libuv reads those bytes until then, whatever
    // the task that wrote them does meanwhile, even if it is cancelled and gone.
    struct Write {
        uv_write_t req;
        std::shared_ptr<Stream> stream;
    };
    auto* w = new Write{.req = {}, .stream = shared_from_this()};
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(in_flight.data(), static_cast<unsigned>(in_flight.size()));
    const int rc = uv_write(&w->req, handle->stream(), &buf, 1, [](uv_write_t* req, int status) {
        std::unique_ptr<Write> done(static_cast<Write*>(req->data));
        Stream& s = *done->stream;
        const std::size_t n = s.in_flight.size();
        // Keep a small buffer for the next write; give a big one back, so a
        // burst does not pin its memory for the life of the connection.
        if (s.in_flight.capacity() > chunk) {
            s.in_flight = std::string();
        } else {
            s.in_flight.clear();
        }
        if (status == 0) {
            if (s.on_written) s.on_written(n);
            s.flush();                        // the next write: everything written meanwhile
        } else if (status != UV_ECANCELED) {  // (cancelled: abort() closed the handle)
            s.write_failed(status);
        }
        if (s.queued() <= s.low_water || s.write_error) s.drainers.wake_all();
    });
    if (rc != 0) {
        delete w;
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
    if (uv_shutdown(&op->req, handle->stream(), [](uv_shutdown_t* req, int) {
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
    // Stay alive until libuv lets go: on_closed tells wait_closed().
    handle->on_closed = [self = shared_from_this(), tell = std::move(handle->on_closed)] {
        tell();
    };
    std::exchange(handle, nullptr)->close();  // a pending write ends with UV_ECANCELED first
}

std::string Stream::address(bool peer) const {
    if (!handle || handle->uv.handle.type != UV_TCP) return "?";  // closed, or stdin
    return peer ? net::peer_of(&handle->uv.tcp) : net::local_of(&handle->uv.tcp);
}

std::shared_ptr<Stream> tcp_stream() {
    auto* h = new Handle;
    uv_tcp_init(loop(), &h->uv.tcp);
    return std::make_shared<Stream>(h);
}

Task<void> wait_closed(std::shared_ptr<Stream> s) {
    while (!s->closed)
        co_await park(s->closers);
}

void FileSource::want_more() {
    if (pending || eof || error) return;
    struct Read {
        uv_fs_t req;
        std::shared_ptr<FileSource> source;
        char data[chunk];
    };
    auto* op = new Read{.req = {}, .source = shared_from_this(), .data = {}};
    op->req.data = op;
    uv_buf_t buf = uv_buf_init(op->data, sizeof op->data);
    pending = true;
    uv_fs_read(loop(), &op->req, STDIN_FILENO, &buf, 1, offset, [](uv_fs_t* req) {
        std::unique_ptr<Read> done(static_cast<Read*>(req->data));
        const auto n = static_cast<int>(req->result);  // bytes, 0 at the end, or an error
        uv_fs_req_cleanup(req);
        FileSource& self = *done->source;
        self.pending = false;
        self.offset += std::max(n, 0);
        self.received({done->data, static_cast<std::size_t>(std::max(n, 0))},
                      n == 0 ? UV_EOF : std::min(n, 0));
    });
}

}  // namespace detail

// ---------------------------------------------------------------------------
// StreamReader

Task<bool> StreamReader::more() {
    detail::Source& s = *s_;
    const std::size_t before = s.buffer.size();
    while (s.buffer.size() == before && !s.eof && !s.error) {
        s.want_more();
        // If uv_read_start failed, nothing will ever wake us: no wait then.
        co_await detail::park(s.readers, s.error != 0);
    }
    if (s.buffer.size() == before && s.error) throw ConnectionError(uv_strerror(s.error), s.error);
    co_return s.buffer.size() > before;
}

Task<bool> StreamReader::fill() {
    if (!s_->buffer.empty()) co_return true;
    co_return co_await more();
}

bool StreamReader::ended() const {
    if (!s_->buffer.empty()) return false;
    if (s_->error) throw ConnectionError(uv_strerror(s_->error), s_->error);
    return s_->eof;
}

Task<std::string> StreamReader::read(std::size_t max) {
    if (!co_await fill()) co_return std::string();
    std::string bytes(buffered().substr(0, max));
    consume(bytes.size());
    co_return bytes;
}

Task<std::string> StreamReader::read_exactly(std::size_t n) {
    while (s_->buffer.size() < n) {
        if (co_await more()) continue;
        std::string partial(buffered());
        consume(partial.size());
        throw IncompleteReadError(std::move(partial), n);
    }
    std::string bytes(buffered().substr(0, n));
    consume(n);
    co_return bytes;
}

Task<std::optional<std::string>> StreamReader::read_line() {
    const std::size_t limit = s_->line_limit;
    std::size_t scanned = 0;  // no byte is looked at twice
    std::size_t end;
    while ((end = buffered().find('\n', scanned)) == std::string_view::npos) {
        scanned = s_->buffer.size();
        // Without a limit, a peer that never sends '\n' would make us buffer
        // without bound (reading stops at read_limit, but more() restarts it).
        if (scanned > limit) throw LimitOverrunError("no end of line within the limit", scanned);
        if (co_await more()) continue;
        if (s_->buffer.empty()) co_return std::nullopt;
        end = s_->buffer.size();  // a last line without a newline
        break;
    }
    if (end > limit) throw LimitOverrunError("line longer than the limit", end + 1);
    std::string line(buffered().substr(0, end));
    consume(std::min(end + 1, s_->buffer.size()));
    co_return line;
}

// ---------------------------------------------------------------------------
// StreamWriter

Task<void> StreamWriter::drain() {
    detail::Stream& s = *s_;
    if (s.queued() > s.high_water) {
        while (s.queued() > s.low_water && !s.write_error && s.handle)
            co_await detail::park(s.drainers);
    }
    if (s.write_error) throw ConnectionError(uv_strerror(s.write_error), s.write_error);
}

// ---------------------------------------------------------------------------
// open_connection, start_server, open_stdin

Task<Connection> open_connection(std::string host, std::uint16_t port) {
    const sockaddr_storage addr = net::resolve(host, port, false);
    const auto* a = reinterpret_cast<const sockaddr*>(&addr);
    auto stream = detail::tcp_stream();
    // libuv calls back even if we stop waiting (UV_ECANCELED, once the handle
    // is closed), so the request owns itself until then.
    struct Connect {
        uv_connect_t req{};
        int status = 1;  // 1: not finished
        detail::WaitList waiters;
        std::shared_ptr<Connect> self;
    };
    auto op = std::make_shared<Connect>();
    op->req.data = op.get();
    int rc = uv_tcp_connect(&op->req, &stream->handle->uv.tcp, a, [](uv_connect_t* req, int st) {
        auto* c = static_cast<Connect*>(req->data);
        c->status = st;
        c->waiters.wake_all();
        c->self.reset();  // may free it: nothing after this
    });
    if (rc == 0) op->self = op;
    while (rc == 0 && op->status == 1)
        co_await detail::park(op->waiters);  // cancelled: ~Stream closes the handle
    if (rc == 0) rc = op->status;
    if (rc < 0) {
        throw ConnectionError(
            fmt::format("cannot connect to {}: {}", net::format_address(a), uv_strerror(rc)), rc);
    }
    uv_tcp_nodelay(&stream->handle->uv.tcp, 1);
    co_return Connection{StreamReader(stream), StreamWriter(stream)};
}

// A listener is a Stream too: the same handle ownership, close and wait_closed.
struct Server::State : detail::Stream {
    using Stream::Stream;
    Handler handler;
    TaskGroup connections;
};

Server::Server(std::shared_ptr<State> s) : s_(std::move(s)) {}
std::string Server::address() const {
    return s_->address(false);
}
void Server::close() {
    s_->abort();
}
Task<void> Server::wait_closed() {
    return detail::wait_closed(s_);
}

Task<Server> start_server(Server::Handler handler, std::string host, std::uint16_t port,
                          TaskGroup connections) {
    auto* h = new detail::Handle;
    uv_tcp_init(detail::loop(), &h->uv.tcp);
    auto s = std::make_shared<Server::State>(h);
    s->handler = std::move(handler);
    s->connections = std::move(connections);
    auto on_connection = [](uv_stream_t* listener, int status) {
        auto* self =
            static_cast<Server::State*>(detail::Handle::owner_of<detail::Stream>(listener));
        auto stream = detail::tcp_stream();
        if (status == 0) status = uv_accept(listener, stream->handle->stream());
        if (status != 0) {
            fmt::print(stderr, "accept: {}\n", uv_strerror(status));
            return;  // ~Stream closes the handle
        }
        uv_tcp_nodelay(&stream->handle->uv.tcp, 1);
        // One task per connection, in the server's group: its owner waits for
        // them all. An exception a handler lets out is reported.
        self->connections.create_task([handler = self->handler, stream] {
            return handler(StreamReader(stream), StreamWriter(stream));
        });
    };
    net::listen_uv(&h->uv.tcp, host, port, on_connection);  // or throws, saying why
    co_return Server(s);
}

StreamReader open_stdin() {
    const uv_handle_type type = uv_guess_handle(STDIN_FILENO);
    if (type != UV_TTY && type != UV_NAMED_PIPE)  // a regular file, /dev/null...
        return StreamReader(std::make_shared<detail::FileSource>());
    auto* h = new detail::Handle;
    if (type == UV_TTY) {
        uv_tty_init(detail::loop(), &h->uv.tty, STDIN_FILENO, 1);
    } else {
        uv_pipe_init(detail::loop(), &h->uv.pipe, 0);
        uv_pipe_open(&h->uv.pipe, STDIN_FILENO);
    }
    return StreamReader(std::make_shared<detail::Stream>(h));
}

}  // namespace coro
