// Stage 02: one thread, non-blocking sockets, select().
//
// Instead of a thread waiting on each socket, one thread asks the kernel
// "which of these descriptors can I read or write *without waiting*?" with
// select(), then does exactly that much work and asks again. Nothing ever
// blocks, so one thread serves everyone:
//
//   loop:  select(listener + clients to read, clients with pending output to write)
//          listener readable  -> accept
//          client readable    -> on_readable -> on_frame -> broadcast -> send_frame
//          client writable    -> on_writable
//          a receiver's queue over --max-pending: its senders leave the read set
//          (pause_reading) until it drains (resume_senders) -- backpressure
//
// The price: all state that lived on a thread's stack in stage 01 (the decoder,
// what is left to write) now lives in the Client struct, and every read and
// write may do only part of the job.
#include <fcntl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "cli.hpp"
#include "frame.hpp"
#include "log.hpp"
#include "net.hpp"
#include "work.hpp"

using logs::log;
using Clock = std::chrono::steady_clock;

namespace {

struct Client {
    int id = 0;
    std::string peer;
    net::Fd fd;  // closed (and so reset to -1) by close_client
    frame::Decoder decoder;
    net::OutputBuffer output;  // bytes not yet accepted by the kernel
    bool closing = false;      // no more reading; close once output is flushed
    // Flow control (common/limits.hpp). As a sender: the receivers whose
    // queues our frames took over the mark; while any is left we are not read.
    std::vector<int> waiting_for;
    // As a receiver: someone waits for us to drain; and when the kernel last
    // took a byte from us (the stall clock).
    bool over_mark = false;
    Clock::time_point last_progress;
};

struct Server {
    cli::ServerOptions options;
    logs::Trace trace{false};
    net::Fd listener;
    net::Fd spare_fd;  // kept in reserve for EMFILE, see accept()
    // SIGINT and SIGTERM, as a descriptor select() can watch: the read end of
    // the self-pipe (see main).
    net::Fd signals;
    std::vector<std::unique_ptr<Client>> clients;
    int next_id = 1;
    bool stopping = false;
    Clock::time_point shutdown_deadline;  // once stopping: cut whoever is still behind
};

timeval to_timeval(Clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count() + 1;
    timeval tv{};  // +1 above: never wake up early
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(us / 1'000'000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>(us % 1'000'000);
    return tv;
}

// The write end of the self-pipe, for the signal handler (which can reach
// nothing but globals).
int signal_pipe = -1;

void on_signal(int signal) {
    const int saved = errno;  // the code we interrupted may be about to read it
    const auto byte = static_cast<unsigned char>(signal);
    [[maybe_unused]] auto n = ::write(signal_pipe, &byte, 1);
    errno = saved;
}

void on_readable(Server& server, Client& client);
void relay_frames(Server& server, Client& client);
void on_frame(Server& server, Client& from, const std::string& payload);
void broadcast(Server& server, Client& from, std::string_view encoded);
void send_frame(Server& server, Client& from, Client& to, std::string_view encoded);
void pause_reading(Server& server, Client& sender, Client& receiver);
void on_writable(Server& server, Client& client);
void resume_senders(Server& server, Client& receiver);
void close_client(Server& server, Client& client, std::string_view reason);

// The listener is readable: connections are waiting. Take them all.
void accept(Server& server) {
    while (true) {
        net::Fd fd = net::accept_connection(server.listener.get(), true);
        if (!fd) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // no more waiting
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors. The connection stays queued and the
                // listener stays readable, so select() would return at once,
                // forever: a busy loop. Free our spare descriptor, accept the
                // connection and close it, then take the spare back.
                // (Linux reports EMFILE even when nobody is waiting, so stop
                // once the queue is empty.)
                server.spare_fd.reset();
                net::Fd shed{::accept(server.listener.get(), nullptr, nullptr)};
                const bool queue_empty = !shed;
                if (shed) log("out of descriptors: refused {}", net::peer_address(shed.get()));
                shed.reset();
                server.spare_fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
                if (queue_empty) return;
                continue;
            }
            log("accept failed: {}", std::strerror(errno));
            return;
        }
        // ANCHOR: fd-setsize
        // FD_SET on a descriptor >= FD_SETSIZE (1024) writes past the end of
        // the fd_set: memory corruption, not an error code. select() simply
        // cannot watch it, so we refuse the client.
        if (fd.get() >= FD_SETSIZE) {
            log("refused {}: descriptor {} >= FD_SETSIZE ({}), select() cannot watch it",
                net::peer_address(fd.get()), fd.get(), FD_SETSIZE);
            continue;  // the Fd closes the connection
        }
        // ANCHOR_END: fd-setsize
        net::set_nodelay(fd.get());
        auto client = std::make_unique<Client>();
        client->id = server.next_id++;
        client->peer = net::peer_address(fd.get());
        client->fd = std::move(fd);
        client->decoder = frame::Decoder(server.options.max_frame);
        log("client {} connected from {}", client->id, client->peer);
        server.trace.accept(client->id, client->peer);
        server.clients.push_back(std::move(client));
    }
}

// select() said we can read without blocking. Read once -- whatever is there,
// which may be half a header or many frames -- and go back to the loop, so one
// busy client cannot starve the others.
void on_readable(Server& server, Client& client) {
    const auto span = server.trace.span("on_readable", client.id);  // for --trace-json
    char buffer[64 * 1024];
    ssize_t n = ::recv(client.fd.get(), buffer, sizeof buffer, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;  // try later
        close_client(server, client, std::strerror(errno));
        return;
    }
    if (n == 0) {  // the peer closed (or half-closed) its side
        if (client.decoder.mid_frame()) {
            close_client(server, client, "end of stream in the middle of a frame (dropped)");
        } else if (client.output.empty()) {
            close_client(server, client, "end of stream");
        } else {
            client.closing = true;  // flush what we owe it first (echo mode)
        }
        return;
    }
    server.trace.read(client.id, static_cast<std::size_t>(n));
    client.decoder.feed({buffer, static_cast<std::size_t>(n)});
    relay_frames(server, client);
}

// Every complete frame in the client's decoder -- until relaying one pauses
// the client: the rest wait in the decoder for resume_senders.
void relay_frames(Server& server, Client& client) {
    while (client.fd && client.waiting_for.empty()) {
        auto payload = client.decoder.next();
        if (!payload) break;
        on_frame(server, client, *payload);
    }
    if (client.decoder.failed()) close_client(server, client, client.decoder.error());
}

void on_frame(Server& server, Client& from, const std::string& payload) {
    const auto span = server.trace.span("on_frame", from.id);
    server.trace.frame(from.id, payload.size());
    // --work: a CPU-bound handler. The one thread does it, so while it runs
    // the loop stands still: nobody else is read, written or accepted.
    if (server.options.work.count() > 0) {
        work::crunch(payload, server.options.work);
        server.trace.work(from.id, server.options.work.count());
    }
    const std::string encoded = frame::encode(payload);
    if (server.options.echo) {
        send_frame(server, from, from, encoded);
    } else {
        broadcast(server, from, encoded);
    }
}

void broadcast(Server& server, Client& from, std::string_view encoded) {
    for (auto& to : server.clients) {
        if (to.get() != &from && to->fd) send_frame(server, from, *to, encoded);
    }
}

// Queue a frame for a client. Nothing is written here: the socket joins the
// write set, and on_writable sends when the kernel has room.
void send_frame(Server& server, Client& from, Client& to, std::string_view encoded) {
    if (to.closing) return;                                  // it is leaving: nothing new for it
    if (to.output.empty()) to.last_progress = Clock::now();  // the stall clock starts
    to.output.append(encoded);
    server.trace.queue(to.id, encoded.size(), to.output.size());
    // ANCHOR: backpressure
    // The frame is queued whatever the size of the queue: a reader that keeps
    // reading never loses one. But past the mark we stop reading from the
    // sender, so TCP slows it down and the queue cannot grow without bound.
    if (to.output.size() > server.options.limits.max_pending) pause_reading(server, from, to);
    // ANCHOR_END: backpressure
}

// The sender leaves the read set (see run) until `receiver` drains.
void pause_reading(Server& server, Client& sender, Client& receiver) {
    receiver.over_mark = true;
    if (std::find(sender.waiting_for.begin(), sender.waiting_for.end(), receiver.id) !=
        sender.waiting_for.end()) {
        return;
    }
    sender.waiting_for.push_back(receiver.id);
    server.trace.pause(sender.id, receiver.id, receiver.output.size());
}

// select() said the socket can take more bytes. send() takes what fits --
// possibly only part -- and the rest stays queued for next time.
void on_writable(Server& server, Client& client) {
    const auto span = server.trace.span("on_writable", client.id);
    std::string_view pending = client.output.pending();
    ssize_t n = net::send_some(client.fd.get(), pending);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        close_client(server, client, std::strerror(errno));
        return;
    }
    client.output.consume(static_cast<std::size_t>(n));
    client.last_progress = Clock::now();
    server.trace.write(client.id, static_cast<std::size_t>(n), client.output.size());
    if (client.over_mark && client.output.size() <= server.options.limits.low_water()) {
        resume_senders(server, client);
    }
    if (client.output.empty() && client.closing) close_client(server, client, "end of stream");
}

// `receiver` drained below the low-water mark, or is gone: the senders that
// waited for it (and for nobody else) are read again -- first the frames
// already in their decoders.
void resume_senders(Server& server, Client& receiver) {
    receiver.over_mark = false;
    for (auto& sender : server.clients) {
        if (std::erase(sender->waiting_for, receiver.id) == 0) continue;
        if (!sender->waiting_for.empty()) continue;  // still held back by another
        server.trace.resume(sender->id);
        relay_frames(server, *sender);
    }
}

// A receiver with output waiting whose kernel buffer has taken no byte for
// the stall timeout is not reading at all: cut it, so the senders it held
// back go on. Returns how long select() may sleep before the next check.
std::optional<Clock::duration> check_stalled(Server& server) {
    const auto now = Clock::now();
    const auto stall_timeout = server.options.limits.stall_timeout;
    std::optional<Clock::duration> next;
    for (auto& client : server.clients) {
        if (!client->fd || client->output.empty()) continue;
        const auto deadline = client->last_progress + stall_timeout;
        if (now >= deadline) {
            close_client(server, *client,
                         fmt::format("stalled: took no byte for {} ms, {} bytes pending",
                                     stall_timeout.count(), client->output.size()));
        } else if (!next || deadline - now < *next) {
            next = deadline - now;
        }
    }
    return next;
}

// Closes the descriptor now (so it leaves the fd_sets) but keeps the Client
// until the start of the next loop pass: others may still hold a reference to it.
void close_client(Server& server, Client& client, std::string_view reason) {
    if (!client.fd) return;  // already closed in this pass
    server.trace.close(client.id, reason);
    log("client {} disconnected: {}", client.id, reason);
    client.fd.reset();
    if (client.over_mark) resume_senders(server, client);  // nobody waits for a closed client
}

// SIGINT/SIGTERM: stop accepting and reading, flush what is already queued
// for connected clients (for at most the grace period), then close them.
// run() exits once all are gone. A second signal exits at once.
void begin_shutdown(Server& server) {
    unsigned char signal = 0;
    if (::read(server.signals.get(), &signal, 1) != 1) return;
    if (server.stopping) {  // the second one: now
        std::size_t queued = 0;
        for (const auto& client : server.clients)
            queued += client->output.size();
        logs::exit_now(queued);
    }
    log("{} received, shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
    server.stopping = true;
    server.shutdown_deadline = Clock::now() + server.options.limits.shutdown_grace;
    server.listener.reset();
    for (auto& client : server.clients) {
        client->closing = true;
        if (client->output.empty()) close_client(server, *client, "server shutting down");
    }
}

void run(Server& server) {
    while (true) {
        // First the deadlines (this may close clients): how long may we sleep?
        std::optional<Clock::duration> wait = check_stalled(server);
        // Forget the clients closed since the last pass.
        std::erase_if(server.clients, [](const auto& client) { return !client->fd; });
        // Rebuilt on every pass: select() overwrites the sets with its answer.
        fd_set readable, writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        int max_fd = server.signals.get();
        FD_SET(server.signals.get(), &readable);
        if (server.listener) {
            FD_SET(server.listener.get(), &readable);
            max_fd = std::max(max_fd, server.listener.get());
        }
        for (const auto& client : server.clients) {
            const int fd = client->fd.get();
            // A paused sender stays out: its bytes wait in the kernel, and TCP
            // tells it to slow down once they fill its window.
            if (!client->closing && client->waiting_for.empty()) FD_SET(fd, &readable);
            // Only while there is something to write: an idle socket is almost
            // always writable, and would wake select() up for nothing.
            if (!client->output.empty()) FD_SET(fd, &writable);
            max_fd = std::max(max_fd, fd);
        }
        if (server.stopping && server.clients.empty()) return;

        // On --trace-json's timeline, the time in select() is the loop's idle time.
        auto idle = server.trace.span("idle (select)", 0);
        // ANCHOR: select-call
        // Sleep until something is ready -- or until the next deadline: a
        // receiver's stall timeout, the end of the shutdown grace. (The talk's
        // timeout=0 turns this into a busy loop that burns a core doing nothing.)
        if (server.stopping) {
            const auto left = std::max(server.shutdown_deadline - Clock::now(), Clock::duration{});
            if (!wait || left < *wait) wait = left;
        }
        timeval timeout = to_timeval(wait.value_or(Clock::duration{}));
        int ready = ::select(max_fd + 1, &readable, &writable, nullptr, wait ? &timeout : nullptr);
        // ANCHOR_END: select-call
        idle.end();
        if (ready < 0) {
            if (errno == EINTR) continue;  // interrupted (e.g. by a debugger): ask again
            throw std::runtime_error(fmt::format("select: {}", std::strerror(errno)));
        }
        if (server.stopping && Clock::now() >= server.shutdown_deadline) {
            for (auto& client : server.clients) {
                close_client(server, *client, "server shutting down: output not flushed in time");
            }
            server.clients.clear();
            continue;
        }

        if (FD_ISSET(server.signals.get(), &readable)) begin_shutdown(server);
        // ANCHOR: readiness
        if (server.listener && FD_ISSET(server.listener.get(), &readable)) accept(server);
        // Clients accepted just now are at the end and were not in the sets.
        for (std::size_t i = 0; i < server.clients.size(); ++i) {
            Client& client = *server.clients[i];
            if (client.fd && FD_ISSET(client.fd.get(), &readable)) on_readable(server, client);
            if (client.fd && FD_ISSET(client.fd.get(), &writable)) on_writable(server, client);
        }
        // ANCHOR_END: readiness
    }
}

}  // namespace

int main(int argc, char** argv) {
    Server server;
    server.options = cli::parse_server(
        {.name = "02_select/server", .summary = "one thread, non-blocking sockets and select()"},
        {argv, static_cast<std::size_t>(argc)});
    server.trace = logs::Trace(server.options.trace);

    // A signal handler runs in the middle of whatever we were doing and may
    // call almost nothing. So ours only writes the signal's number, one byte,
    // to a pipe whose other end select() watches: a signal becomes input like
    // any other (the "self-pipe trick", portable POSIX).
    int pipe_ends[2];
    if (::pipe(pipe_ends) != 0) {
        log("error: pipe: {}", std::strerror(errno));
        return 1;
    }
    server.signals.reset(pipe_ends[0]);
    signal_pipe = pipe_ends[1];  // lives as long as the process
    for (int fd : pipe_ends) {
        net::set_nonblocking(fd);  // a full pipe must not block the handler
        net::set_cloexec(fd);
    }
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    for (int signal : {SIGINT, SIGTERM})
        ::sigaction(signal, &action, nullptr);

    try {
        server.listener = net::listen_tcp(server.options.host, server.options.port);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    // Non-blocking: select() may report a connection that is gone (reset)
    // before we accept it, and a blocking accept() would then wait for the next.
    net::set_nonblocking(server.listener.get());
    server.spare_fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    net::announce_listening(server.listener.get());
    log("mode: select, {}, senders paused past {} bytes pending, stall timeout {} ms",
        server.options.echo ? "echo" : "relay", server.options.limits.max_pending,
        server.options.limits.stall_timeout.count());

    run(server);
    log("bye");
    return 0;
}
