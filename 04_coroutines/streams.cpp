#include "streams.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "net.hpp"

namespace coro {

IncompleteReadError::IncompleteReadError(std::string partial_bytes, std::size_t expected_bytes)
    : std::runtime_error(
          fmt::format("stream ended after {} of {} bytes", partial_bytes.size(), expected_bytes)),
      partial(std::move(partial_bytes)),
      expected(expected_bytes) {}

ConnectionError::ConnectionError(const std::string& what, int uv_code)
    : std::runtime_error(what), code(uv_code) {}

namespace detail {

constexpr std::size_t read_limit = 256 * 1024;         // stop reading while this much is unread
constexpr std::size_t default_high_water = 64 * 1024;  // drain() waits above this...
constexpr std::size_t default_low_water = 16 * 1024;   // ...until the queue is below this

// One connection (or stdin): the libuv handle and everything both halves
// share. The handle is a detail::Handle on the heap; this struct only points
// to it, and closes it when the last reader/writer lets go.
struct StreamState : std::enable_shared_from_this<StreamState> {
    Handle* handle = nullptr;  // null for a file, and once closing
    bool is_file = false;
    std::int64_t file_offset = 0;
    bool file_read_pending = false;

    std::string buffer;                                    // received, not yet consumed
    std::function<void(std::string_view)> take_next_read;  // see hand_next_read_to
    bool reading = false;
    bool eof = false;
    int read_error = 0;
    std::vector<Waiter> read_waiters;

    std::size_t write_buffered = 0;
    std::size_t high_water = default_high_water, low_water = default_low_water;
    int write_error = 0;
    std::vector<Waiter> drain_waiters;

    bool flushing = false;  // close() waits for the queue to drain
    bool closed = false;
    std::vector<Waiter> close_waiters;
    std::function<void(std::size_t)> on_written;  // observer, for --trace

    void attach(Handle* h) {
        handle = h;
        h->owner = this;
        // If the runtime closes a forgotten handle while we still exist.
        h->on_closed = [this] { on_handle_closed(); };
    }
    ~StreamState() {
        if (handle) {
            handle->on_closed = nullptr;  // we are gone: nobody to tell
            handle->owner = nullptr;
            handle->close();
        }
    }
    void on_handle_closed() {
        handle = nullptr;
        closed = true;
        eof = true;
        wake_all(read_waiters);
        wake_all(drain_waiters);
        wake_all(close_waiters);
    }
    // Like asyncio's close(): stop reading now, write what is queued, then
    // close. abort() does not wait for the queue.
    void close() {
        stop_reading();
        eof = true;
        wake_all(read_waiters);
        if (!handle || flushing) return;
        if (write_buffered == 0 || write_error) return abort();
        struct Flush {
            uv_shutdown_t req;
            std::shared_ptr<StreamState> state;
        };
        auto* op = new Flush{.req = {}, .state = shared_from_this()};
        op->req.data = op;
        flushing = true;
        // uv_shutdown completes once every queued write has been written.
        int rc = uv_shutdown(&op->req, handle->stream(), [](uv_shutdown_t* req, int) {
            std::unique_ptr<Flush> done(static_cast<Flush*>(req->data));
            done->state->abort();
        });
        if (rc != 0) {
            delete op;
            abort();
        }
    }
    void abort() {
        if (!handle) {
            if (is_file && !closed) on_handle_closed();
            return;
        }
        Handle* h = std::exchange(handle, nullptr);
        // Stay alive until libuv has let go, to tell wait_closed().
        h->on_closed = [self = shared_from_this()] { self->on_handle_closed(); };
        h->close();  // pending writes complete with UV_ECANCELED first
    }
    void start_reading();
    void stop_reading() {
        if (reading && handle) uv_read_stop(handle->stream());
        reading = false;
    }
    void check_write_error() const {
        if (write_error) throw ConnectionError(uv_strerror(write_error), write_error);
    }
};

namespace {

void alloc_buffer(uv_handle_t*, std::size_t, uv_buf_t* buf) {
    // Read into one scratch buffer and append to the stream's own: the
    // bytes are copied before any other read can happen.
    thread_local char scratch[64 * 1024];
    *buf = uv_buf_init(scratch, sizeof scratch);
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* st = static_cast<StreamState*>(static_cast<Handle*>(stream->data)->owner);
    if (nread > 0) {
        const std::string_view bytes(buf->base, static_cast<std::size_t>(nread));
        if (st->take_next_read && st->buffer.empty()) {
            // Someone waits to parse these bytes: give them over now, while
            // they are in the scratch buffer. Once: if more come before it
            // runs, they are buffered, and read_limit bounds them.
            std::exchange(st->take_next_read, nullptr)(bytes);
        } else {
            st->buffer.append(bytes);
            if (st->buffer.size() >= read_limit) st->stop_reading();  // backpressure
        }
    } else if (nread == UV_EOF) {
        st->eof = true;
        st->stop_reading();
    } else if (nread < 0) {
        st->read_error = static_cast<int>(nread);
        st->stop_reading();
    }
    wake_all(st->read_waiters);
}

// A file read in flight: the request and its buffer live until the callback.
struct FileRead {
    uv_fs_t req;
    std::shared_ptr<StreamState> state;
    char data[64 * 1024];
};

void on_file_read(uv_fs_t* req) {
    std::unique_ptr<FileRead> op(static_cast<FileRead*>(req->data));
    StreamState& st = *op->state;
    const ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    st.file_read_pending = false;
    st.reading = false;
    if (n > 0) {
        st.buffer.append(op->data, static_cast<std::size_t>(n));
        st.file_offset += n;
    } else if (n == 0) {
        st.eof = true;
    } else {
        st.read_error = static_cast<int>(n);
    }
    wake_all(st.read_waiters);
}

}  // namespace

void StreamState::start_reading() {
    if (reading || eof || read_error || closed) return;
    if (is_file) {
        if (file_read_pending) return;
        auto* op = new FileRead{.req = {}, .state = shared_from_this(), .data = {}};
        op->req.data = op;
        uv_buf_t buf = uv_buf_init(op->data, sizeof op->data);
        file_read_pending = reading = true;
        uv_fs_read(loop(), &op->req, STDIN_FILENO, &buf, 1, file_offset, on_file_read);
        return;
    }
    if (!handle) return;
    reading = true;
    if (int rc = uv_read_start(handle->stream(), alloc_buffer, on_read); rc != 0) {
        reading = false;
        read_error = rc;
    }
}

std::shared_ptr<StreamState> make_tcp_state() {
    auto state = std::make_shared<StreamState>();
    auto* h = new Handle;
    uv_tcp_init(loop(), &h->uv.tcp);
    state->attach(h);
    return state;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// StreamReader

Task<bool> StreamReader::more() {
    auto& st = *s_;
    const std::size_t before = st.buffer.size();
    while (st.buffer.size() == before && !st.eof && !st.read_error) {
        st.start_reading();
        // Cancellable. Cancelling here loses nothing: bytes that arrive later
        // stay in the buffer for the next read.
        co_await detail::park(st.read_waiters);
    }
    if (st.buffer.size() == before && st.read_error) {
        throw ConnectionError(uv_strerror(st.read_error), st.read_error);
    }
    co_return st.buffer.size() > before;
}

Task<bool> StreamReader::fill() {
    if (!s_->buffer.empty()) co_return true;
    co_return co_await more();
}

std::string_view StreamReader::buffered() const {
    return s_->buffer;
}

detail::ParkAwaiter StreamReader::wait() {
    s_->start_reading();
    return detail::park(s_->read_waiters);
}

void StreamReader::hand_next_read_to(std::function<void(std::string_view)> take) {
    s_->take_next_read = std::move(take);
}

bool StreamReader::ended() const {
    if (!s_->buffer.empty()) return false;
    if (s_->read_error) throw ConnectionError(uv_strerror(s_->read_error), s_->read_error);
    return s_->eof;
}

void StreamReader::consume(std::size_t n) {
    s_->buffer.erase(0, n);
    // Below the limit again: resume reading from the socket.
    if (s_->buffer.size() < detail::read_limit && s_->reading == false && !s_->is_file) {
        s_->start_reading();
    }
}

Task<std::string> StreamReader::read(std::size_t max) {
    if (!co_await fill()) co_return std::string();
    std::string bytes(s_->buffer.substr(0, max));
    consume(bytes.size());
    co_return bytes;
}

Task<std::string> StreamReader::read_exactly(std::size_t n) {
    while (s_->buffer.size() < n) {
        if (!co_await more()) {
            std::string partial = std::exchange(s_->buffer, {});
            throw IncompleteReadError(std::move(partial), n);
        }
    }
    std::string bytes = s_->buffer.substr(0, n);
    consume(n);
    co_return bytes;
}

Task<std::optional<std::string>> StreamReader::read_line() {
    std::size_t scanned = 0;
    while (true) {
        if (auto nl = s_->buffer.find('\n', scanned); nl != std::string::npos) {
            std::string line = s_->buffer.substr(0, nl);
            consume(nl + 1);
            co_return line;
        }
        scanned = s_->buffer.size();
        if (!co_await more()) break;
    }
    if (s_->buffer.empty()) co_return std::nullopt;
    co_return std::exchange(s_->buffer, {});  // a last line without a newline
}

bool StreamReader::at_eof() const {
    return s_->eof && s_->buffer.empty();
}

// ---------------------------------------------------------------------------
// StreamWriter

namespace {
// One uv_write in flight. It owns (or shares) its bytes and keeps the stream
// state alive: libuv reads the bytes until the callback, whatever the task
// that wrote them does meanwhile -- even if it is cancelled and gone.
struct WriteRequest {
    uv_write_t req;
    std::shared_ptr<detail::StreamState> state;
    std::shared_ptr<const std::string> bytes;
};

void write_done(uv_write_t* req, int status) {
    std::unique_ptr<WriteRequest> w(static_cast<WriteRequest*>(req->data));
    detail::StreamState& st = *w->state;
    st.write_buffered -= w->bytes->size();
    if (status < 0 && status != UV_ECANCELED && !st.write_error) st.write_error = status;
    if (status == 0 && st.on_written) st.on_written(w->bytes->size());
    if (st.write_buffered <= st.low_water || st.write_error) detail::wake_all(st.drain_waiters);
}
}  // namespace

void StreamWriter::write(std::string_view bytes) {
    write(std::make_shared<const std::string>(bytes));
}

void StreamWriter::write(std::shared_ptr<const std::string> bytes) {
    auto& st = *s_;
    if (!st.handle || st.flushing || st.write_error || bytes->empty()) return;  // closing
    auto* w = new WriteRequest{.req = {}, .state = s_, .bytes = std::move(bytes)};
    w->req.data = w;
    uv_buf_t buf =
        uv_buf_init(const_cast<char*>(w->bytes->data()), static_cast<unsigned>(w->bytes->size()));
    if (int rc = uv_write(&w->req, st.handle->stream(), &buf, 1, write_done); rc != 0) {
        st.write_error = rc;
        delete w;
        return;
    }
    st.write_buffered += w->bytes->size();
}

Task<void> StreamWriter::drain() {
    auto& st = *s_;
    st.check_write_error();
    if (st.write_buffered <= st.high_water) co_return;
    while (st.write_buffered > st.low_water && !st.write_error && st.handle) {
        co_await detail::park(st.drain_waiters);
    }
    st.check_write_error();
}

std::size_t StreamWriter::buffered() const {
    return s_->write_buffered;
}

void StreamWriter::set_write_buffer_limits(std::size_t high, std::size_t low) {
    s_->high_water = high;
    s_->low_water = std::min(low, high);
}

void StreamWriter::write_eof() {
    if (!s_->handle) return;
    struct Shutdown {
        uv_shutdown_t req;
        std::shared_ptr<detail::StreamState> state;
    };
    auto* op = new Shutdown{.req = {}, .state = s_};
    op->req.data = op;
    if (uv_shutdown(&op->req, s_->handle->stream(), [](uv_shutdown_t* req, int) {
            delete static_cast<Shutdown*>(req->data);
        }) != 0) {
        delete op;
    }
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

void StreamWriter::on_written(std::function<void(std::size_t)> observer) {
    s_->on_written = std::move(observer);
}

Task<void> StreamWriter::wait_closed() {
    while (!s_->closed)
        co_await detail::park(s_->close_waiters);
}

std::string StreamWriter::peer() const {
    if (!s_->handle || s_->handle->uv.handle.type != UV_TCP) return "?";
    sockaddr_storage addr{};
    int len = sizeof addr;
    if (uv_tcp_getpeername(&s_->handle->uv.tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return "?";
    }
    return net::format_address(reinterpret_cast<const sockaddr*>(&addr));
}

// ---------------------------------------------------------------------------
// open_connection

Task<Connection> open_connection(std::string host, std::uint16_t port) {
    const sockaddr_storage addr = net::resolve(host, port, false);
    const std::string where = net::format_address(reinterpret_cast<const sockaddr*>(&addr));
    auto state = detail::make_tcp_state();

    // The request lives on the heap until its callback, which libuv calls
    // even if we stop waiting (then with UV_ECANCELED, once the handle closes).
    struct Connect {
        uv_connect_t req;
        int status = 1;  // 1: not finished
        std::vector<detail::Waiter> waiters;
        std::shared_ptr<Connect> self;  // the request's own reference
    };
    auto op = std::make_shared<Connect>();
    op->self = op;
    op->req.data = op.get();
    int rc =
        uv_tcp_connect(&op->req, &state->handle->uv.tcp, reinterpret_cast<const sockaddr*>(&addr),
                       [](uv_connect_t* req, int status) {
                           auto* c = static_cast<Connect*>(req->data);
                           c->status = status;
                           detail::wake_all(c->waiters);
                           c->self.reset();  // may free it: nothing after this
                       });
    if (rc != 0) {
        op->self.reset();
        throw ConnectionError(fmt::format("cannot connect to {}: {}", where, uv_strerror(rc)), rc);
    }
    while (op->status == 1)
        co_await detail::park(op->waiters);  // cancel: ~state closes
    if (op->status < 0) {
        throw ConnectionError(
            fmt::format("cannot connect to {}: {}", where, uv_strerror(op->status)), op->status);
    }
    uv_tcp_nodelay(&state->handle->uv.tcp, 1);
    co_return Connection{StreamReader(state), StreamWriter(state)};
}

// ---------------------------------------------------------------------------
// start_server

struct Server::State {
    detail::Handle* handle = nullptr;
    Handler handler;
    TaskGroup connections;
    bool closed = false;
    std::vector<detail::Waiter> close_waiters;

    ~State() {
        if (handle) {
            handle->on_closed = nullptr;
            handle->close();
        }
    }
};

namespace {
void on_connection(uv_stream_t* listener, int status) {
    auto* state = static_cast<Server::State*>(static_cast<detail::Handle*>(listener->data)->owner);
    if (status < 0) {
        fmt::print(stderr, "accept: {}\n", uv_strerror(status));
        return;
    }
    auto stream = detail::make_tcp_state();
    if (int rc = uv_accept(listener, stream->handle->stream()); rc != 0) {
        fmt::print(stderr, "accept: {}\n", uv_strerror(rc));
        return;  // ~stream closes the handle
    }
    uv_tcp_nodelay(&stream->handle->uv.tcp, 1);
    // One task per connection, in the server's group: its owner waits for
    // them all. An exception a handler does not handle is reported.
    state->connections.create_task([handler = state->handler, stream]() {
        return handler(StreamReader(stream), StreamWriter(stream));
    });
}
}  // namespace

Task<Server> start_server(Server::Handler handler, std::string host, std::uint16_t port,
                          TaskGroup connections) {
    const sockaddr_storage addr = net::resolve(host, port, true);
    auto state = std::make_shared<Server::State>();
    state->handler = std::move(handler);
    state->connections = std::move(connections);
    state->handle = new detail::Handle;
    state->handle->owner = state.get();
    uv_tcp_init(detail::loop(), &state->handle->uv.tcp);
    state->handle->on_closed = [s = state.get()] {
        s->handle = nullptr;
        s->closed = true;
        detail::wake_all(s->close_waiters);
    };
    int rc = uv_tcp_bind(&state->handle->uv.tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(state->handle->stream(), SOMAXCONN, on_connection);
    if (rc != 0) {
        throw ConnectionError(
            fmt::format("cannot listen on {}: {}",
                        net::format_address(reinterpret_cast<const sockaddr*>(&addr)),
                        uv_strerror(rc)),
            rc);
    }
    co_return Server(state);
}

std::string Server::address() const {
    sockaddr_storage addr{};
    int len = sizeof addr;
    if (!s_->handle) return "?";
    uv_tcp_getsockname(&s_->handle->uv.tcp, reinterpret_cast<sockaddr*>(&addr), &len);
    return net::format_address(reinterpret_cast<const sockaddr*>(&addr));
}

void Server::close() {
    if (!s_->handle) return;
    detail::Handle* h = std::exchange(s_->handle, nullptr);
    h->on_closed = [s = s_] {
        s->closed = true;
        detail::wake_all(s->close_waiters);
    };
    h->close();
}

Task<void> Server::wait_closed() {
    while (!s_->closed)
        co_await detail::park(s_->close_waiters);
}

// ---------------------------------------------------------------------------
// stdin

StreamReader open_stdin() {
    auto state = std::make_shared<detail::StreamState>();
    const uv_handle_type type = uv_guess_handle(STDIN_FILENO);
    if (type == UV_TTY) {
        auto* h = new detail::Handle;
        uv_tty_init(detail::loop(), &h->uv.tty, STDIN_FILENO, 1);
        state->attach(h);
    } else if (type == UV_NAMED_PIPE) {
        auto* h = new detail::Handle;
        uv_pipe_init(detail::loop(), &h->uv.pipe, 0);
        uv_pipe_open(&h->uv.pipe, STDIN_FILENO);
        state->attach(h);
    } else {
        // A regular file, /dev/null, ...: not pollable, read on the thread pool.
        state->is_file = true;
    }
    return StreamReader(state);
}

// ---------------------------------------------------------------------------
// FrameReader

Task<std::optional<std::string>> FrameReader::next() {
    while (true) {
        if (auto payload = decoder_.next()) co_return payload;
        if (decoder_.failed()) throw FrameError(decoder_.error());
        if (reader_.buffered().empty()) {
            if (reader_.ended()) {
                if (decoder_.mid_frame()) throw IncompleteReadError("", frame::header_size);
                co_return std::nullopt;  // a clean end between frames
            }
            // Suspended here while the connection is idle. The bytes that wake
            // us go straight into the decoder.
            reader_.hand_next_read_to([this](std::string_view bytes) {
                if (on_bytes) on_bytes(bytes.size());
                decoder_.feed(bytes);
            });
            struct Withdraw {  // also if we are cancelled while waiting
                StreamReader& reader;
                ~Withdraw() { reader.hand_next_read_to(nullptr); }
            } withdraw{reader_};
            co_await reader_.wait();
            continue;
        }
        // Feed the decoder straight from the stream's buffer: no extra copy.
        if (on_bytes) on_bytes(reader_.buffered().size());
        decoder_.feed(reader_.buffered());
        reader_.consume(reader_.buffered().size());
    }
}

}  // namespace coro
