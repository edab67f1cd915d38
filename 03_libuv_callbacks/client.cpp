// Stage 03 client: libuv for the socket and for stdin.
//
// Like stage 02's client, one thread waits for stdin and the socket at once --
// but libuv does the waiting and calls us back. Stdin needs care: libuv reads
// a terminal (uv_tty_t) or a pipe (uv_pipe_t) as a stream, but a regular file
// (`client < lines.txt`) is not pollable at all, so it is read with uv_fs_read,
// which libuv runs on its thread pool. uv_guess_handle tells which we have.
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "cli.hpp"
#include "frame.hpp"
#include "lines.hpp"
#include "log.hpp"
#include "net.hpp"
#include "uv_net.hpp"

using logs::log;

namespace {

constexpr int self = 0;                      // the client's own events are traced as client=0
constexpr std::size_t max_queued = 1 << 20;  // stop reading stdin while this much is unsent

struct Client {
    uv_loop_t loop;
    uv_tcp_t sock;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    logs::Trace trace{false};
    std::string server_address;  // "127.0.0.1:1234", for messages
    frame::Decoder decoder;

    // stdin: a stream (tty or pipe), or a file read with uv_fs_read.
    uv_handle_type stdin_type = UV_UNKNOWN_HANDLE;
    union {
        uv_tty_t tty;
        uv_pipe_t pipe;
    } stdin_stream;
    uv_fs_t file_req;
    bool file_read_pending = false;
    std::int64_t file_offset = 0;

    lines::Splitter input;   // stdin bytes, cut into lines
    std::size_t queued = 0;  // bytes in uv_write requests not yet completed
    bool stdin_paused = false;
    bool input_done = false;
    bool sent_eof = false;
    bool finished = false;
    int exit_code = 0;
    char stdin_buffer[64 * 1024];
    char sock_buffer[64 * 1024];
};

bool stdin_is_stream(const Client& c) {
    return c.stdin_type == UV_TTY || c.stdin_type == UV_NAMED_PIPE;
}
uv_stream_t* stdin_stream(Client& c) {
    return reinterpret_cast<uv_stream_t*>(&c.stdin_stream);
}
uv_stream_t* sock_stream(Client& c) {
    return reinterpret_cast<uv_stream_t*>(&c.sock);
}

void start_stdin(Client& client);
void stop_stdin(Client& client);

// Done, one way or another: close every handle; uv_run then returns.
void finish(Client& client, int exit_code) {
    if (client.finished) return;
    client.finished = true;
    client.exit_code = exit_code;
    if (stdin_is_stream(client))
        uv_close(reinterpret_cast<uv_handle_t*>(&client.stdin_stream), nullptr);
    // (A file read in flight cannot be interrupted; its callback sees `finished`.)
    uv_close(reinterpret_cast<uv_handle_t*>(&client.sock), nullptr);
}

// All input read and all frames written: half-close, so the server sees our
// end of stream. It closes its side when done with us, which ends on_readable.
void maybe_shutdown(Client& client) {
    if (!client.input_done || client.queued > 0 || client.sent_eof || client.finished) return;
    client.sent_eof = true;
    uv_shutdown(&client.shutdown_req, sock_stream(client), [](uv_shutdown_t*, int) {});
}

void on_written(uv_write_t* req, int status) {
    std::unique_ptr<std::string> frame(static_cast<std::string*>(req->data));
    Client& client = *static_cast<Client*>(req->handle->data);
    delete req;
    client.queued -= frame->size();
    if (status == UV_ECANCELED) return;
    if (status < 0) {
        log("error: cannot send: {}", uv_strerror(status));
        finish(client, 1);
        return;
    }
    client.trace.write(self, frame->size());
    if (client.stdin_paused && client.queued < max_queued) start_stdin(client);
    maybe_shutdown(client);
}

void send_line(Client& client, std::string_view line) {
    auto* frame = new std::string(frame::encode(line));  // lives until on_written
    auto* req = new uv_write_t;
    req->data = frame;
    uv_buf_t buf = uv_buf_init(frame->data(), static_cast<unsigned>(frame->size()));
    uv_write(req, sock_stream(client), &buf, 1, on_written);
    client.queued += frame->size();
}

// Bytes from stdin, from either kind of source. They are not lines yet: a
// line may span two reads.
void on_input(Client& client, std::string_view bytes) {
    client.input.feed(bytes);
    while (auto line = client.input.next())
        send_line(client, *line);
    if (client.queued >= max_queued) stop_stdin(client);  // backpressure
}

void on_input_end(Client& client) {
    if (auto last = client.input.rest()) send_line(client, *last);
    client.input_done = true;
    maybe_shutdown(client);
}

void on_stdin_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    Client& client = *static_cast<Client*>(stream->data);
    if (nread > 0) {
        on_input(client, {buf->base, static_cast<std::size_t>(nread)});
    } else if (nread < 0) {
        if (nread != UV_EOF) log("error: reading stdin: {}", uv_strerror(static_cast<int>(nread)));
        uv_read_stop(stream);
        on_input_end(client);
    }
}

void read_file_chunk(Client& client);

void on_file_read(uv_fs_t* req) {
    Client& client = *static_cast<Client*>(req->data);
    const ssize_t result = req->result;
    uv_fs_req_cleanup(req);
    client.file_read_pending = false;
    if (client.finished) return;
    if (result > 0) {
        client.file_offset += result;
        on_input(client, {client.stdin_buffer, static_cast<std::size_t>(result)});
        if (!client.stdin_paused) read_file_chunk(client);
    } else {
        if (result < 0) log("error: reading stdin: {}", uv_strerror(static_cast<int>(result)));
        on_input_end(client);
    }
}

void read_file_chunk(Client& client) {
    if (client.file_read_pending || client.input_done) return;
    client.file_read_pending = true;
    client.file_req.data = &client;
    uv_buf_t buf = uv_buf_init(client.stdin_buffer, sizeof client.stdin_buffer);
    uv_fs_read(&client.loop, &client.file_req, 0, &buf, 1, client.file_offset, on_file_read);
}

void start_stdin(Client& client) {
    client.stdin_paused = false;
    if (client.input_done || client.finished) return;
    if (stdin_is_stream(client)) {
        uv_read_start(
            stdin_stream(client),
            [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
                auto& c = *static_cast<Client*>(h->data);
                *buf = uv_buf_init(c.stdin_buffer, sizeof c.stdin_buffer);
            },
            on_stdin_read);
    } else {
        read_file_chunk(client);
    }
}

void stop_stdin(Client& client) {
    client.stdin_paused = true;
    if (stdin_is_stream(client)) uv_read_stop(stdin_stream(client));
    // For a file: on_file_read simply does not ask for the next chunk.
}

void on_readable(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    Client& client = *static_cast<Client*>(stream->data);
    if (nread == 0) return;
    if (nread < 0) {
        if (nread == UV_EOF && client.sent_eof) {
            finish(client, 0);  // we said goodbye; so did the server
        } else {
            log("error: server closed the connection{}{}", nread == UV_EOF ? "" : ": ",
                nread == UV_EOF ? "" : uv_strerror(static_cast<int>(nread)));
            finish(client, 1);
        }
        return;
    }
    client.trace.read(self, static_cast<std::size_t>(nread));
    client.decoder.feed({buf->base, static_cast<std::size_t>(nread)});
    while (auto payload = client.decoder.next()) {
        client.trace.frame(self, payload->size());
        cli::print_frame(*payload);
    }
    if (client.decoder.failed()) {
        log("error: bad frame from server: {}", client.decoder.error());
        finish(client, 1);
    }
}

void on_connect(uv_connect_t* req, int status) {
    Client& client = *static_cast<Client*>(req->data);
    if (status < 0) {
        log("error: cannot connect to {}: {}", client.server_address, uv_strerror(status));
        finish(client, 1);
        return;
    }
    uv_tcp_nodelay(&client.sock, 1);
    client.trace.connected(net::local_of(&client.sock), client.server_address);
    uv_read_start(
        sock_stream(client),
        [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
            auto& c = *static_cast<Client*>(h->data);
            *buf = uv_buf_init(c.sock_buffer, sizeof c.sock_buffer);
        },
        on_readable);
    start_stdin(client);
}

}  // namespace

int main(int argc, char** argv) {
    const auto options = cli::parse_client(
        {.name = "03_libuv_callbacks/client", .summary = "chat client on the libuv event loop"},
        {argv, static_cast<std::size_t>(argc)});
    auto client = std::make_unique<Client>();
    client->trace = logs::Trace(options.trace);
    uv_loop_init(&client->loop);

    // A terminal or a pipe can be watched for readiness; a regular file cannot
    // (it is always "ready"), and /dev/null and friends are neither: read
    // those with uv_fs_read.
    client->stdin_type = uv_guess_handle(0);
    if (client->stdin_type == UV_TTY) {
        uv_tty_init(&client->loop, &client->stdin_stream.tty, 0, 1);
    } else if (client->stdin_type == UV_NAMED_PIPE) {
        uv_pipe_init(&client->loop, &client->stdin_stream.pipe, 0);
        uv_pipe_open(&client->stdin_stream.pipe, 0);
    }
    if (stdin_is_stream(*client)) client->stdin_stream.tty.data = client.get();

    sockaddr_storage addr{};
    try {
        addr = net::resolve(options.host, options.port, false);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    client->server_address = net::format_address(reinterpret_cast<const sockaddr*>(&addr));
    uv_tcp_init(&client->loop, &client->sock);
    client->sock.data = client.get();
    client->connect_req.data = client.get();
    uv_tcp_connect(&client->connect_req, &client->sock, reinterpret_cast<const sockaddr*>(&addr),
                   on_connect);

    uv_run(&client->loop, UV_RUN_DEFAULT);
    if (int rc = uv_loop_close(&client->loop); rc != 0)
        log("error: uv_loop_close: {}", uv_strerror(rc));
    return client->exit_code;
}
