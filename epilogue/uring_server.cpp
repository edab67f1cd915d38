// Epilogue, part 3: completion instead of readiness (io_uring, Linux only).
//
// Stage 02's server, written for completions. select() answered "which
// sockets could I read or write without waiting?", and then we did the work.
// io_uring takes the work itself: we *submit* a receive or a send, with the
// buffer, and later *reap* its completion -- "your 812 bytes are in this
// buffer", "1,024 bytes of that buffer went out". One io_uring_enter() call
// submits every request queued since the last one and waits for completions,
// so a busy loop makes far fewer system calls than read + write + epoll_wait
// per message.
//
//   loop:  submit what is queued, wait for completions (or the next deadline)
//          accept done    -> accept: a new client; submit its first receive
//          receive done   -> on_read_done -> on_frame -> broadcast -> send_frame
//          send done      -> on_write_done
//          a receiver's queue over --max-pending: its senders get no new
//          receive (pause_reading) until it drains (resume_senders)
//
// The price is the lesson: **the kernel owns a buffer from submission to
// completion**. A receive in flight holds its buffer, so every connection
// waiting for bytes has one (stage 02 read into one buffer on the stack); a
// send in flight holds `writing`, which nobody may touch until it completes;
// and a client cannot be freed while any of its requests is in flight -- not
// even after close(): the request holds the socket. Closing means cancelling
// and waiting for the completions.
//
// Read it beside stage 02 (`./workshop diff 02 uring`): the names are 02's,
// but where readiness becomes completion (on_readable -> on_read_done,
// on_writable -> on_write_done) -- the comments say what changed.
#include <fcntl.h>
#include <liburing.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
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

struct Client;

// What a completion is for: its user_data points to one of these. Each
// client has one per kind of request, and at most one of each in flight.
struct Request {
    enum class Kind { accept, signal, read, write } kind;
    Client* client = nullptr;
};

// A receive's buffer, per client: the kernel writes into it whenever bytes
// arrive, until the completion says how many. (16 KiB, not 02's 64 KiB on the
// stack: an idle connection holds one.)
constexpr std::size_t read_size = 16 * 1024;

struct Client {
    int id = 0;
    std::string peer;
    net::Fd fd;  // closed once no request is in flight (see reap_closed)
    frame::Decoder decoder;
    net::OutputBuffer output;  // queued, not yet handed to the kernel
    std::string writing;       // handed to the kernel: ours again at its completion
    std::size_t written = 0;   // of `writing`, sent so far (a send may be partial)
    std::array<char, read_size> read_buffer;
    Request read_request{Request::Kind::read, this};
    Request write_request{Request::Kind::write, this};
    bool reading = false;  // a receive is in flight
    bool sending = false;  // a send is in flight
    bool closed = false;   // close_client ran: no new request
    bool closing = false;  // no more reading; close once output is flushed
    // Flow control, as in stage 02 (common/limits.hpp).
    std::vector<int> waiting_for;
    bool over_mark = false;
    Clock::time_point last_progress;
};

struct Server {
    cli::ServerOptions options;
    logs::Trace trace{false};
    io_uring ring;
    net::Fd listener;
    net::SpareDescriptor spare;  // for EMFILE, see accept()
    // SIGINT and SIGTERM as a descriptor we submit reads on (signalfd).
    net::Fd signals;
    signalfd_siginfo signal_info;  // the signal read's buffer: the kernel's until it completes
    Request accept_request{Request::Kind::accept};
    Request signal_request{Request::Kind::signal};
    bool accepting = false;  // an accept is in flight
    std::vector<std::unique_ptr<Client>> clients;
    int next_id = 1;
    bool stopping = false;
    Clock::time_point shutdown_deadline;  // once stopping: cut whoever is still behind
};

void relay_frames(Server& server, Client& client);
void on_frame(Server& server, Client& from, const std::string& payload);
void broadcast(Server& server, Client& from, std::string_view encoded);
void send_frame(Server& server, Client& from, Client& to, std::string_view encoded);
void pause_reading(Server& server, Client& sender, Client& receiver);
void start_write(Server& server, Client& client);
void resume_senders(Server& server, Client& receiver);
void close_client(Server& server, Client& client, std::string_view reason);

// A submission queue entry to fill. The queue is sized for every request we
// can have in flight, but if it is full, submitting makes room.
io_uring_sqe* next_sqe(Server& server) {
    io_uring_sqe* sqe = io_uring_get_sqe(&server.ring);
    if (!sqe) {
        io_uring_submit(&server.ring);
        sqe = io_uring_get_sqe(&server.ring);
    }
    return sqe;
}

// Nothing happens here: the request waits in the submission queue until the
// loop's next io_uring_enter() hands it, and all the others, to the kernel.
void submit_accept(Server& server) {
    io_uring_sqe* sqe = next_sqe(server);
    io_uring_prep_accept(sqe, server.listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &server.accept_request);
    server.accepting = true;
}

// ANCHOR: submit-read
// Ask for the next bytes into the client's own buffer. Whether they are there
// yet does not matter: the completion comes when they are.
void start_reading(Server& server, Client& client) {
    if (client.reading || client.closed || client.closing || !client.waiting_for.empty()) return;
    io_uring_sqe* sqe = next_sqe(server);
    io_uring_prep_recv(sqe, client.fd.get(), client.read_buffer.data(), client.read_buffer.size(),
                       0);
    io_uring_sqe_set_data(sqe, &client.read_request);
    client.reading = true;
}
// ANCHOR_END: submit-read

void submit_signal_read(Server& server) {
    io_uring_sqe* sqe = next_sqe(server);
    io_uring_prep_read(sqe, server.signals.get(), &server.signal_info, sizeof server.signal_info,
                       0);
    io_uring_sqe_set_data(sqe, &server.signal_request);
}

// Cancel one of our requests in flight; its completion still comes (with
// -ECANCELED, or with its result if it finished first).
void cancel(Server& server, Request& request) {
    io_uring_sqe* sqe = next_sqe(server);
    io_uring_prep_cancel(sqe, &request, 0);
    io_uring_sqe_set_data(sqe, nullptr);  // the cancel's own completion: nothing to do
}

// An accept completed: `result` is the new descriptor, or -errno.
void accept(Server& server, int result) {
    server.accepting = false;
    if (!server.stopping) submit_accept(server);  // the next one
    if (result < 0) {
        if (result == -EMFILE || result == -ENFILE) {
            // Out of descriptors: the accept we just submitted would complete
            // at once with EMFILE again, forever. Refuse the waiting
            // connection with the reserve descriptor, as stage 02 does.
            if (const std::string refused = server.spare.refuse(server.listener.get());
                !refused.empty()) {
                log("out of descriptors: refused {}", refused);
            }
        } else if (result != -ECANCELED && result != -ECONNABORTED && result != -EINTR) {
            log("accept failed: {}", std::strerror(-result));
        }
        return;
    }
    net::Fd fd{result};
    if (server.stopping) return;  // it completed before the cancel: the Fd closes it
    net::set_nodelay(fd.get());
    auto client = std::make_unique<Client>();
    client->id = server.next_id++;
    client->peer = net::peer_address(fd.get());
    client->fd = std::move(fd);
    client->decoder = frame::Decoder(server.options.max_frame);
    log("client {} connected from {}", client->id, client->peer);
    server.trace.accept(client->id, client->peer);
    start_reading(server, *client);
    server.clients.push_back(std::move(client));
}

// ANCHOR: read-done
// A receive completed: `result` bytes are already in the client's buffer (02's
// on_readable was told it *could* read, and read). 0 is the end of the stream.
void on_read_done(Server& server, Client& client, int result) {
    client.reading = false;
    // Closed or stopping: cancelled -- or done just before the cancel, and
    // then its bytes are dropped: no new frame is taken once we stop.
    if (client.closed || client.closing) return;
    const auto span = server.trace.span("on_read_done", client.id);
    // ANCHOR_END: read-done
    if (result < 0) {
        if (result == -EINTR || result == -EAGAIN) return start_reading(server, client);
        if (result == -ECANCELED) return;  // begin_shutdown stopped reading
        return close_client(server, client, std::strerror(-result));
    }
    if (result == 0) {  // the peer closed (or half-closed) its side
        if (client.decoder.mid_frame()) {
            close_client(server, client, "end of stream in the middle of a frame (dropped)");
        } else if (client.output.empty() && !client.sending) {
            close_client(server, client, "end of stream");
        } else {
            client.closing = true;  // flush what we owe it first (echo mode)
        }
        return;
    }
    server.trace.read(client.id, static_cast<std::size_t>(result));
    client.decoder.feed({client.read_buffer.data(), static_cast<std::size_t>(result)});
    relay_frames(server, client);
    start_reading(server, client);  // the next receive (unless paused: resume_senders will)
}

// Every complete frame in the client's decoder -- until relaying one pauses
// the client: the rest wait in the decoder for resume_senders.
void relay_frames(Server& server, Client& client) {
    while (!client.closed && client.waiting_for.empty()) {
        auto payload = client.decoder.next();
        if (!payload) break;
        on_frame(server, client, *payload);
    }
    if (client.decoder.failed()) close_client(server, client, client.decoder.error());
}

void on_frame(Server& server, Client& from, const std::string& payload) {
    const auto span = server.trace.span("on_frame", from.id);
    server.trace.frame(from.id, payload.size());
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
        if (to.get() != &from && !to->closed) send_frame(server, from, *to, encoded);
    }
}

std::size_t pending(const Client& client) {
    return client.output.size() + (client.writing.size() - client.written);
}

// Queue a frame for a client, and submit a send unless one is in flight.
void send_frame(Server& server, Client& from, Client& to, std::string_view encoded) {
    if (to.closing) return;                                 // it is leaving: nothing new for it
    if (pending(to) == 0) to.last_progress = Clock::now();  // the stall clock starts
    to.output.append(encoded);
    server.trace.queue(to.id, encoded.size(), pending(to));
    if (!to.sending) start_write(server, to);
    // The frame is queued whatever the size of the queue: a reader that keeps
    // reading never loses one. But past the mark we stop reading from the
    // sender, so TCP slows it down and the queue cannot grow without bound.
    if (pending(to) > server.options.limits.max_pending) pause_reading(server, from, to);
}

// The sender gets no new receive until `receiver` drains. (One already in
// flight completes, and its bytes wait in the decoder: relay_frames stops.)
void pause_reading(Server& server, Client& sender, Client& receiver) {
    receiver.over_mark = true;
    if (std::find(sender.waiting_for.begin(), sender.waiting_for.end(), receiver.id) !=
        sender.waiting_for.end()) {
        return;
    }
    sender.waiting_for.push_back(receiver.id);
    server.trace.pause(sender.id, receiver.id, pending(receiver));
}

// Hand everything queued to the kernel as one send. From here to its
// completion `writing` is the kernel's: nothing may append to it or free it.
void start_write(Server& server, Client& client) {
    if (client.sending || client.closed) return;
    if (client.written == client.writing.size()) {  // the last send is all gone: take the queue
        client.writing.assign(client.output.pending());
        client.output.consume(client.output.size());
        client.written = 0;
    }
    if (client.writing.empty()) return;
    io_uring_sqe* sqe = next_sqe(server);
    io_uring_prep_send(sqe, client.fd.get(), client.writing.data() + client.written,
                       client.writing.size() - client.written, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &client.write_request);
    client.sending = true;
}

// ANCHOR: write-done
// A send completed: `result` bytes of `writing` are gone (02's on_writable
// was told the socket *could* take bytes, and sent). A partial send is
// resubmitted for the rest.
void on_write_done(Server& server, Client& client, int result) {
    client.sending = false;
    if (client.closed) return;
    const auto span = server.trace.span("on_write_done", client.id);
    // ANCHOR_END: write-done
    if (result < 0) {
        if (result == -EINTR || result == -EAGAIN) return start_write(server, client);
        return close_client(server, client, std::strerror(-result));
    }
    client.written += static_cast<std::size_t>(result);
    client.last_progress = Clock::now();
    server.trace.write(client.id, static_cast<std::size_t>(result), pending(client));
    if (client.written == client.writing.size()) {
        client.writing.clear();
        client.written = 0;
        if (client.writing.capacity() > 64 * 1024) client.writing = std::string();
    }
    start_write(server, client);  // the rest of a partial send, or what was queued meanwhile
    if (client.over_mark && pending(client) <= server.options.limits.low_water()) {
        resume_senders(server, client);
    }
    if (pending(client) == 0 && client.closing) {
        close_client(server, client, server.stopping ? "server shutting down" : "end of stream");
    }
}

// `receiver` drained below the low-water mark, or is gone: the senders that
// waited for it (and for nobody else) get a receive again -- after the frames
// already in their decoders.
void resume_senders(Server& server, Client& receiver) {
    receiver.over_mark = false;
    for (auto& sender : server.clients) {
        if (std::erase(sender->waiting_for, receiver.id) == 0) continue;
        if (!sender->waiting_for.empty()) continue;  // still held back by another
        server.trace.resume(sender->id);
        relay_frames(server, *sender);
        start_reading(server, *sender);
    }
}

// As in stage 02: cut a receiver that took no byte for the stall timeout.
// Returns how long the loop may wait before the next check.
std::optional<Clock::duration> check_stalled(Server& server) {
    const auto now = Clock::now();
    const auto stall_timeout = server.options.limits.stall_timeout;
    std::optional<Clock::duration> next;
    for (auto& client : server.clients) {
        if (client->closed || pending(*client) == 0) continue;
        const auto deadline = client->last_progress + stall_timeout;
        if (now >= deadline) {
            close_client(server, *client,
                         fmt::format("stalled: took no byte for {} ms, {} bytes pending",
                                     stall_timeout.count(), pending(*client)));
        } else if (!next || deadline - now < *next) {
            next = deadline - now;
        }
    }
    return next;
}

// Stage 02 closed the descriptor here. We cannot yet: a receive or send in
// flight holds the socket and its buffer. Cancel them; reap_closed frees the
// client once their completions are in.
void close_client(Server& server, Client& client, std::string_view reason) {
    if (client.closed) return;
    client.closed = true;
    server.trace.close(client.id, reason);
    log("client {} disconnected: {}", client.id, reason);
    if (client.reading) cancel(server, client.read_request);
    if (client.sending) cancel(server, client.write_request);
    if (client.over_mark) resume_senders(server, client);  // nobody waits for a closed client
}

// Closed clients with nothing in flight: close the descriptor, free the client.
void reap_closed(Server& server) {
    std::erase_if(server.clients,
                  [](const auto& c) { return c->closed && !c->reading && !c->sending; });
}

// SIGINT/SIGTERM (read from the signalfd): stop accepting and reading, flush
// what is queued (for at most the grace period), then close. A second signal
// exits at once.
void begin_shutdown(Server& server, int result) {
    if (result != sizeof server.signal_info) return submit_signal_read(server);
    const auto signal = static_cast<int>(server.signal_info.ssi_signo);
    if (server.stopping) {  // the second one: now
        std::size_t queued = 0;
        for (const auto& client : server.clients)
            queued += pending(*client);
        logs::exit_now(queued);
    }
    submit_signal_read(server);  // for a second one
    log("{} received, shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
    server.stopping = true;
    server.shutdown_deadline = Clock::now() + server.options.limits.shutdown_grace;
    if (server.accepting) cancel(server, server.accept_request);
    for (auto& client : server.clients) {
        client->closing = true;
        if (client->reading) cancel(server, client->read_request);
        if (pending(*client) == 0) close_client(server, *client, "server shutting down");
    }
}

void on_completion(Server& server, io_uring_cqe* cqe) {
    auto* request = static_cast<Request*>(io_uring_cqe_get_data(cqe));
    if (!request) return;  // a cancel's own completion
    switch (request->kind) {
        case Request::Kind::accept:
            return accept(server, cqe->res);
        case Request::Kind::signal:
            return begin_shutdown(server, cqe->res);
        case Request::Kind::read:
            return on_read_done(server, *request->client, cqe->res);
        case Request::Kind::write:
            return on_write_done(server, *request->client, cqe->res);
    }
}

// ANCHOR: loop
void run(Server& server) {
    while (true) {
        std::optional<Clock::duration> wait = check_stalled(server);
        reap_closed(server);
        if (server.stopping && server.clients.empty() && !server.accepting) return;
        if (server.stopping) {
            const auto left = std::max(server.shutdown_deadline - Clock::now(), Clock::duration{});
            if (!wait || left < *wait) wait = left;
        }
        // One system call: hand the kernel every request queued since the
        // last pass, and sleep until at least one completes -- or until the
        // next deadline.
        auto idle = server.trace.span("idle (io_uring_enter)", 0);
        io_uring_cqe* cqe = nullptr;
        int rc;
        if (wait) {
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*wait).count();
            __kernel_timespec timeout{.tv_sec = ns / 1'000'000'000, .tv_nsec = ns % 1'000'000'000};
            rc = io_uring_submit_and_wait_timeout(&server.ring, &cqe, 1, &timeout, nullptr);
        } else {
            rc = io_uring_submit_and_wait(&server.ring, 1);
        }
        idle.end();
        if (rc < 0 && rc != -ETIME && rc != -EINTR) {
            throw std::runtime_error(fmt::format("io_uring_enter: {}", std::strerror(-rc)));
        }
        if (server.stopping && Clock::now() >= server.shutdown_deadline) {
            for (auto& client : server.clients)
                close_client(server, *client, "server shutting down: output not flushed in time");
        }
        // Every completion that is in: no system call to read them, they sit
        // in memory shared with the kernel.
        unsigned head;
        unsigned seen = 0;
        io_uring_for_each_cqe(&server.ring, head, cqe) {
            on_completion(server, cqe);
            ++seen;
        }
        io_uring_cq_advance(&server.ring, seen);
    }
}
// ANCHOR_END: loop

}  // namespace

int main(int argc, char** argv) {
    Server server;
    server.options = cli::parse_server(
        {.name = "epilogue/uring_server", .summary = "completions instead of readiness: io_uring"},
        {argv, static_cast<std::size_t>(argc)});
    server.trace = logs::Trace(server.options.trace);

    // 4096 entries: the submission queue takes what one pass of the loop
    // submits (next_sqe submits early if it fills); the completion queue is
    // twice that, and the kernel keeps overflowing completions for us.
    //
    // One thread submits and reaps (SINGLE_ISSUER), so the kernel may keep
    // the completion work for our next io_uring_enter() instead of
    // interrupting us to do it (DEFER_TASKRUN, Linux 6.1). An older kernel
    // says EINVAL: then without them.
    int rc = io_uring_queue_init(4096, &server.ring,
                                 IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (rc == -EINVAL) rc = io_uring_queue_init(4096, &server.ring, 0);
    if (rc < 0) {
        log("error: io_uring is not available here: {}", std::strerror(-rc));
        return 3;
    }
    // SIGINT and SIGTERM go to a signalfd, read like any other descriptor:
    // blocked first, so they are queued for it rather than delivered.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    server.signals.reset(::signalfd(-1, &mask, SFD_CLOEXEC));

    try {
        server.listener = net::listen_tcp(server.options.host, server.options.port);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    submit_accept(server);
    submit_signal_read(server);
    net::announce_listening(server.listener.get());
    log("mode: io_uring, {}, senders paused past {} bytes pending, stall timeout {} ms",
        server.options.echo ? "echo" : "relay", server.options.limits.max_pending,
        server.options.limits.stall_timeout.count());

    run(server);
    io_uring_queue_exit(&server.ring);
    log("bye");
    return 0;
}
