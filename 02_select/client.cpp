// Stage 02 client: one thread, one select() over stdin and the socket.
//
// Stage 01 needed a second thread because a blocking read of stdin and a
// blocking read of the socket cannot wait together. select() waits for both:
//
//   loop:  select(stdin + socket to read, socket to write if output is pending)
//          stdin readable   -> split lines, queue one frame per line
//          socket readable  -> decode frames, print one line per frame
//          socket writable  -> send what is queued (maybe only part of it)
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "buffer.hpp"
#include "cli.hpp"
#include "frame.hpp"
#include "lines.hpp"
#include "log.hpp"
#include "net.hpp"

using logs::log;

namespace {

constexpr int self = 0;  // the client's own events are traced as client=0

// Stop reading stdin while this much is queued for the socket: a file piped
// in faster than the network takes it must not pile up in memory.
constexpr std::size_t max_queued = 1024 * 1024;

struct Client {
    int sock = -1;
    logs::Trace trace{false};
    frame::Decoder decoder;
    net::OutputBuffer output;  // frames not yet taken by the kernel
    lines::Splitter input;     // stdin bytes, cut into lines
    bool input_done = false;   // stdin reached its end
    bool sent_eof = false;     // we half-closed the socket
};

void queue_line(Client& client, std::string_view line) {
    std::string encoded = frame::encode(line);
    client.output.append(encoded);
}

// stdin is readable: a read returns at once (maybe with 0 = end of input).
void on_stdin(Client& client) {
    char buffer[64 * 1024];
    ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) return;
        log("error: reading stdin: {}", std::strerror(errno));
        n = 0;  // treat it as the end of input
    }
    if (n == 0) {
        if (auto last = client.input.rest()) queue_line(client, *last);
        client.input_done = true;
        return;
    }
    client.input.feed({buffer, static_cast<std::size_t>(n)});
    while (auto line = client.input.next())
        queue_line(client, *line);
}

// Returns false once the connection is over.
bool on_readable(Client& client, int& exit_code) {
    char buffer[64 * 1024];
    ssize_t n = ::recv(client.sock, buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) {
        if (client.sent_eof && n == 0) return false;  // we said goodbye; so did the server
        log("error: server closed the connection{}{}", n < 0 ? ": " : "",
            n < 0 ? std::strerror(errno) : "");
        exit_code = 1;
        return false;
    }
    client.trace.read(self, static_cast<std::size_t>(n));
    client.decoder.feed({buffer, static_cast<std::size_t>(n)});
    while (auto payload = client.decoder.next()) {
        client.trace.frame(self, payload->size());
        cli::print_frame(*payload);
    }
    if (client.decoder.failed()) {
        log("error: bad frame from server: {}", client.decoder.error());
        exit_code = 1;
        return false;
    }
    return true;
}

bool on_writable(Client& client) {
    std::string_view pending = client.output.pending();
    ssize_t n = net::send_some(client.sock, pending);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return true;
        log("error: cannot send: {}", std::strerror(errno));
        return false;
    }
    client.output.consume(static_cast<std::size_t>(n));
    client.trace.write(self, static_cast<std::size_t>(n));
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    const auto options = cli::parse_client(
        {.name = "02_select/client", .summary = "chat client: one thread, select()"},
        {argv, static_cast<std::size_t>(argc)});

    net::Fd sock;
    try {
        sock = net::connect_tcp(options.host, options.port);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    net::set_nonblocking(sock.get());

    Client client;
    client.sock = sock.get();
    client.trace = logs::Trace(options.trace);
    client.trace.connected(net::local_address(sock.get()), net::peer_address(sock.get()));
    int exit_code = 0;

    while (true) {
        // All input sent: half-close, so the server knows we are done. It
        // closes its side when it has finished with us, which ends the loop.
        if (client.input_done && client.output.empty() && !client.sent_eof) {
            ::shutdown(client.sock, SHUT_WR);
            client.sent_eof = true;
        }
        fd_set readable, writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        // stdin only while we have room to queue what it gives us. (A regular
        // file is always "readable": select() does not wait for files.)
        if (!client.input_done && client.output.size() < max_queued) {
            FD_SET(STDIN_FILENO, &readable);
        }
        FD_SET(client.sock, &readable);
        if (!client.output.empty()) FD_SET(client.sock, &writable);

        if (::select(client.sock + 1, &readable, &writable, nullptr, nullptr) < 0) {
            if (errno == EINTR) continue;
            log("error: select: {}", std::strerror(errno));
            return 1;
        }
        if (FD_ISSET(STDIN_FILENO, &readable)) on_stdin(client);
        if (FD_ISSET(client.sock, &readable) && !on_readable(client, exit_code)) break;
        if (FD_ISSET(client.sock, &writable) && !on_writable(client)) return 1;
    }
    return exit_code;
}
