// Stage 01 client: blocking sockets.
//
// A chat client waits for two things at once: lines on stdin and frames from
// the server. Blocking calls can wait for only one thing each, so we use two
// threads: main sends stdin lines, a receiver thread prints incoming frames.
// (Stage 02 does both in one thread with select().)
#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include <sys/socket.h>

#include "cli.hpp"
#include "frame.hpp"
#include "log.hpp"
#include "net.hpp"

using logs::log;

namespace {

constexpr int self = 0;  // the client's own events are traced as client=0

// Runs in its own thread: blocks in recv() and prints every frame received.
void receive_frames(int sock, const logs::Trace& trace, const std::atomic<bool>& input_done) {
    frame::Decoder decoder;
    char buffer[64 * 1024];
    while (true) {
        ssize_t n = ::recv(sock, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0) {
            trace.read(self, static_cast<std::size_t>(n));
            decoder.feed({buffer, static_cast<std::size_t>(n)});
            while (auto payload = decoder.next()) {
                trace.frame(self, payload->size());
                cli::print_frame(*payload);
            }
            if (!decoder.failed()) continue;
            log("error: bad frame from server: {}", decoder.error());
        } else if (input_done) {
            return;  // we said goodbye (end of stdin) and the server closed: all done
        } else {
            log("error: server closed the connection{}{}", n < 0 ? ": " : "",
                n < 0 ? std::strerror(errno) : "");
        }
        // The main thread is blocked reading stdin and no portable call wakes
        // it up, so the receiver ends the whole process.
        std::fflush(stdout);
        std::_Exit(1);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const auto options = cli::parse_client(
        {.name = "01_blocking/client", .summary = "blocking chat client (two threads)"},
        {argv, static_cast<std::size_t>(argc)});
    logs::Trace trace(options.trace);

    net::Fd sock;
    try {
        sock = net::connect_tcp(options.host, options.port);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    trace.connected(net::local_address(sock.get()), net::peer_address(sock.get()));

    std::atomic<bool> input_done{false};
    std::thread receiver(receive_frames, sock.get(), std::cref(trace), std::cref(input_done));

    // Each line of stdin (a terminal, a pipe or a file alike) becomes one frame.
    std::string line;
    while (std::getline(std::cin, line)) {
        const std::string encoded = frame::encode(line);
        if (!net::send_all(sock.get(), encoded)) {
            log("error: cannot send: {}", std::strerror(errno));
            std::fflush(stdout);
            std::_Exit(1);
        }
        trace.write(self, encoded.size());
    }

    // End of input. Half-close: the server still gets everything we sent, sees
    // end-of-stream after it, and closes -- which ends the receiver thread.
    input_done = true;
    ::shutdown(sock.get(), SHUT_WR);
    receiver.join();
    return 0;
}
