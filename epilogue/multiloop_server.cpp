// Epilogue, part 1: one loop per core.
//
// Stage 03's server, N times over: N threads, each running its own libuv loop
// with its own clients, so a CPU-heavy handler (--work) on one loop no longer
// stops the others, and two cores do twice the work. What stage 03 did inside
// one loop -- a frame from one client reaching every other -- now crosses
// threads, and the rule that keeps this correct is simple to say:
//
//   A client belongs to one loop, and only that loop's thread touches it.
//   Loops talk by message: a queue per loop (under a mutex) and a uv_async
//   handle that wakes the loop to read it.
//
// Six messages travel between loops:
//
//   adopt      loop 0 accepted a socket: take it (and the client's id)
//   frame      a client of mine sent this frame: hand it to your clients
//   delivered  I have handed your frames (this many bytes) to my clients
//   pause   your client `sender` took my client `receiver` over the mark:
//           stop reading it (backpressure across loops)
//   resume  my client has drained: read your sender again
//   stop    SIGINT/SIGTERM came: flush your clients and finish
//
// Accepting: one acceptor (loop 0) hands each socket over, round robin,
// rather than SO_REUSEPORT listeners on every loop. It is portable (macOS has
// SO_REUSEPORT but does not spread connections over the sockets), it gives
// each loop its share exactly, and the client's id is decided in one place.
// It costs a message per connection, and one thread does every accept().
//
// Read stage 03 first: the functions here keep its names and its comments
// about lifetimes, and only what crossing loops adds is explained again.
#include <uv.h>

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "frame.hpp"
#include "log.hpp"
#include "net.hpp"
#include "uv_net.hpp"
#include "work.hpp"

using logs::log;
using Clock = std::chrono::steady_clock;

namespace {

struct Loop;
struct Server;

// Who sent a frame: its id, and the loop it belongs to.
struct Sender {
    int id;
    Loop* loop;
};

struct Client {
    uv_tcp_t handle;  // handle.data points back to this Client
    Loop* loop = nullptr;
    int id = 0;
    std::string peer;
    frame::Decoder decoder;
    std::string output;    // queued, waiting for the write in flight
    std::string writing;   // handed to uv_write: lives until on_write_done
    uv_write_t write_req;  // the one write in flight
    bool closing = false;
    // As a sender: the receivers (on any loop) our frames took over the
    // mark; while any is left, no uv_read.
    std::vector<int> waiting_for;
    // As a receiver: the senders (on any loop) held back until we drain.
    std::vector<Sender> holding_back;
    Clock::time_point last_progress;
};

struct Message {
    enum class Kind { adopt, frame, delivered, pause, resume, stop, finished } kind;
    int client = 0;         // adopt: its id; frame, pause, resume: the sender
    int receiver = 0;       // pause, resume: the receiver it waits for
    Loop* from = nullptr;   // frame, pause: the loop that sent it
    int fd = -1;            // adopt: the accepted socket, ours once taken
    std::size_t bytes = 0;  // delivered: how many
    // frame: the encoded frame, read-only, shared by every loop it goes to.
    std::shared_ptr<const std::string> frame = nullptr;
};

struct Loop {
    Server* server = nullptr;
    int index = 0;
    uv_loop_t uv;
    uv_async_t wakeup;  // another thread posted to `inbox`
    uv_timer_t stall_timer, grace_timer;
    net::IdleSpans idle;
    uv_tcp_t first_stream;         // see init_loop
    std::vector<Client*> clients;  // this loop's, and only this loop's
    bool stopping = false, finished = false;
    // Bytes queued on this loop, for the line a second signal prints (the
    // only figure another thread reads, so an atomic).
    std::atomic<std::size_t> queued{0};
    std::mutex mutex;            // guards the two below
    std::vector<Message> inbox;  // what other loops (or this one) posted
    bool open = true;            // false once `wakeup` is closing
    // An inbox is a queue too, and needs backpressure like a client's: our
    // frames posted to each loop and not yet delivered there, and the senders
    // held back until that loop has caught up (its inbox counts as a
    // receiver, id inbox_id(index), in their waiting_for).
    std::vector<std::size_t> posted_to;
    std::vector<std::vector<int>> held_for;
    char read_buffer[64 * 1024];  // one per loop: each thread decodes into its own
    std::thread thread;           // (loop 0 runs on the main thread)
};

struct Server {
    cli::ServerOptions options;
    logs::Trace trace{false};
    std::vector<std::unique_ptr<Loop>> loops;
    // Loop 0's own: the acceptor and the signals.
    net::Fd listener;
    net::SpareDescriptor spare;  // for EMFILE, as in stage 02
    uv_poll_t acceptor;
    uv_signal_t sigint, sigterm;
    int next_id = 1;
    std::size_t next_loop = 0;
    // Set by loop 0's signal handler before it says "shutting down"; read by
    // every loop, whose `stop` message may come a little later.
    std::atomic<bool> stopping{false};
    std::size_t loops_running = 0;  // loop 0 closes its signals once none is
};

void on_readable(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
void relay_frames(Loop& loop, Client& client);
void on_frame(Loop& loop, Client& from, const std::string& payload);
void broadcast(Loop& loop, Sender from, const std::string& encoded);
void send_frame(Loop& loop, Sender from, Client& to, std::string_view encoded);
bool start_write(Loop& loop, Client& client);
void hold_back(Loop& loop, Sender sender, Client& receiver);
void pause_reading(Loop& loop, int sender, int receiver);
void on_write_done(uv_write_t* req, int status);
void resume_senders(Loop& loop, Client& receiver);
void resume_reading(Loop& loop, int sender, int receiver);
void close_client(Loop& loop, Client& client, std::string_view reason);
void begin_stop(Loop& loop);
void maybe_finish(Loop& loop);

// ---------------------------------------------------------------------------
// Messages between loops

// Any thread may post to any loop. Under the mutex, so the loop cannot close
// `wakeup` between our check of `open` and uv_async_send (the one libuv call
// that is safe from another thread). False: the loop has finished.
bool post(Loop& to, Message message) {
    std::lock_guard lock(to.mutex);
    if (!to.open) return false;
    to.inbox.push_back(std::move(message));
    uv_async_send(&to.wakeup);  // several sends before the loop looks: one callback
    return true;
}

// In a sender's waiting_for: another loop's inbox (client ids are positive).
int inbox_id(const Loop& loop) {
    return -1 - loop.index;
}

Client* find_client(Loop& loop, int id) {
    auto it = std::find_if(loop.clients.begin(), loop.clients.end(),
                           [id](const Client* c) { return c->id == id; });
    return it == loop.clients.end() ? nullptr : *it;
}

void adopt(Loop& loop, int fd, int id);
void inbox_drained(Loop& loop, Loop& other, std::size_t bytes);
void loop_finished(Server& server);

// The loop's uv_async callback: everything posted since the last one, in the
// order it was posted -- so a sender's frames reach each loop in its order.
void on_messages(uv_async_t* handle) {
    Loop& loop = *static_cast<Loop*>(handle->data);
    std::vector<Message> messages;
    {
        std::lock_guard lock(loop.mutex);
        std::swap(messages, loop.inbox);
    }
    const auto span = loop.server->trace.span("on_messages", 0);
    std::vector<std::size_t> delivered(loop.server->loops.size());
    for (Message& m : messages) {
        switch (m.kind) {
            case Message::Kind::adopt:
                adopt(loop, m.fd, m.client);
                break;
            case Message::Kind::frame:
                broadcast(loop, {m.client, m.from}, *m.frame);
                delivered[static_cast<std::size_t>(m.from->index)] += m.frame->size();
                break;
            case Message::Kind::delivered:
                inbox_drained(loop, *m.from, m.bytes);
                break;
            case Message::Kind::pause:
                pause_reading(loop, m.client, m.receiver);
                break;
            case Message::Kind::resume:
                resume_reading(loop, m.client, m.receiver);
                break;
            case Message::Kind::stop:
                begin_stop(loop);
                break;
            case Message::Kind::finished:  // (loop 0 only) one more loop is done
                loop_finished(*loop.server);
                break;
        }
    }
    // One acknowledgement per loop per batch, not one per frame.
    for (std::size_t i = 0; i < delivered.size(); ++i) {
        if (delivered[i] > 0) {
            post(*loop.server->loops[i],
                 {.kind = Message::Kind::delivered, .from = &loop, .bytes = delivered[i]});
        }
    }
}

// ---------------------------------------------------------------------------
// Accepting (loop 0), adopting (every loop)

// The listening socket is readable: take every waiting connection, and hand
// each to the next loop in turn, with its id.
void accept(uv_poll_t* poll, int status, int) {
    Server& server = *static_cast<Server*>(poll->data);
    if (status < 0) return log("accept: {}", uv_strerror(status));
    while (true) {
        net::Fd fd = net::accept_connection(server.listener.get(), true);
        if (!fd) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // no more waiting
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors: refuse the waiting connection with the
                // reserve one, as stage 02 does (common/net.hpp).
                const std::string refused = server.spare.refuse(server.listener.get());
                if (refused.empty()) return;
                log("out of descriptors: refused {}", refused);
                continue;
            }
            return log("accept failed: {}", std::strerror(errno));
        }
        Loop& to = *server.loops[server.next_loop++ % server.loops.size()];
        const int id = server.next_id++;
        if (post(to, {.kind = Message::Kind::adopt, .client = id, .fd = fd.get()}))
            fd.release();  // the message owns it now
    }
}

void start_reading(Client& client) {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&client.handle),
        [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
            Loop& l = *static_cast<Client*>(h->data)->loop;
            *buf = uv_buf_init(l.read_buffer, sizeof l.read_buffer);
        },
        on_readable);
}

// A socket accepted by loop 0 becomes one of this loop's clients.
void adopt(Loop& loop, int fd, int id) {
    if (loop.stopping) {
        ::close(fd);
        return;
    }
    auto* client = new Client;
    client->loop = &loop;
    client->id = id;
    client->decoder = frame::Decoder(loop.server->options.max_frame);
    uv_tcp_init(&loop.uv, &client->handle);
    client->handle.data = client;
    client->write_req.data = client;
    if (int rc = uv_tcp_open(&client->handle, fd); rc != 0) {
        log("accept: {}", uv_strerror(rc));
        ::close(fd);
        uv_close(reinterpret_cast<uv_handle_t*>(&client->handle),
                 [](uv_handle_t* h) { delete static_cast<Client*>(h->data); });
        return;
    }
    uv_tcp_nodelay(&client->handle, 1);
    client->peer = net::peer_of(&client->handle);
    loop.clients.push_back(client);
    log("client {} connected from {} (loop {})", id, client->peer, loop.index);
    loop.server->trace.accept(id, client->peer);
    start_reading(*client);
}

// ---------------------------------------------------------------------------
// Reading and relaying: stage 03's, with broadcast reaching the other loops

std::size_t pending(const Client& client) {
    return client.writing.size() + client.output.size();
}

void on_readable(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    Client& client = *static_cast<Client*>(stream->data);
    Loop& loop = *client.loop;
    if (nread == 0) return;
    // The stop has begun, but this loop's `stop` message may not be in yet:
    // take no new frame from now on (the server has said it is stopping).
    if (loop.server->stopping && !loop.stopping) begin_stop(loop);
    if (loop.stopping) return;
    const auto span = loop.server->trace.span("on_readable", client.id);
    if (nread == UV_EOF) {
        uv_read_stop(stream);
        if (client.decoder.mid_frame()) {
            close_client(loop, client, "end of stream in the middle of a frame (dropped)");
        } else if (pending(client) == 0) {
            close_client(loop, client, "end of stream");
        } else {
            client.closing = true;  // finish our writes to it first (echo mode)
        }
        return;
    }
    if (nread < 0) return close_client(loop, client, uv_strerror(static_cast<int>(nread)));
    loop.server->trace.read(client.id, static_cast<std::size_t>(nread));
    client.decoder.feed({buf->base, static_cast<std::size_t>(nread)});
    relay_frames(loop, client);
}

void relay_frames(Loop& loop, Client& client) {
    while (client.waiting_for.empty() && !client.closing) {
        auto payload = client.decoder.next();
        if (!payload) break;
        on_frame(loop, client, *payload);
    }
    if (client.decoder.failed()) close_client(loop, client, client.decoder.error());
}

void on_frame(Loop& loop, Client& from, const std::string& payload) {
    Server& server = *loop.server;
    const auto span = server.trace.span("on_frame", from.id);
    server.trace.frame(from.id, payload.size());
    // --work: the CPU-bound handler runs on the sender's loop. It stops that
    // loop while it runs, and only that one: the other threads go on.
    if (server.options.work.count() > 0) {
        work::crunch(payload, server.options.work);
        server.trace.work(from.id, server.options.work.count());
    }
    if (server.options.echo)
        return send_frame(loop, {from.id, &loop}, from, frame::encode(payload));
    // Encoded once, shared read-only by every loop it goes to: a frame is
    // immutable once sent, so sharing it needs no lock (the shared_ptr's
    // count is atomic).
    auto encoded = std::make_shared<const std::string>(frame::encode(payload));
    broadcast(loop, {from.id, &loop}, *encoded);
    for (const auto& other : server.loops) {
        if (other.get() == &loop) continue;
        if (!post(*other, {.kind = Message::Kind::frame,
                           .client = from.id,
                           .from = &loop,
                           .frame = encoded})) {
            continue;  // that loop has finished (we are shutting down)
        }
        const auto i = static_cast<std::size_t>(other->index);
        loop.posted_to[i] += encoded->size();
        // That loop is behind: as with a receiver over the mark, stop reading
        // this sender until it catches up.
        if (loop.posted_to[i] > server.options.limits.max_pending) {
            auto& held = loop.held_for[i];
            if (std::find(held.begin(), held.end(), from.id) == held.end()) held.push_back(from.id);
            pause_reading(loop, from.id, inbox_id(*other));
        }
    }
}

// Another loop has handed `bytes` of our frames to its clients: below the
// low-water mark, the senders it held back are read again.
void inbox_drained(Loop& loop, Loop& other, std::size_t bytes) {
    const auto i = static_cast<std::size_t>(other.index);
    loop.posted_to[i] -= bytes;
    if (loop.posted_to[i] > loop.server->options.limits.low_water()) return;
    for (int sender : std::exchange(loop.held_for[i], {}))
        resume_reading(loop, sender, inbox_id(other));
}

// To every client of this loop but the sender (who may be on another loop).
void broadcast(Loop& loop, Sender from, const std::string& encoded) {
    const std::vector<Client*> receivers = loop.clients;  // send_frame may close one
    for (Client* to : receivers) {
        if (to->id != from.id) send_frame(loop, from, *to, encoded);
    }
}

void send_frame(Loop& loop, Sender from, Client& to, std::string_view encoded) {
    if (to.closing) return;
    if (pending(to) == 0) to.last_progress = Clock::now();  // the stall clock starts
    to.output.append(encoded);
    loop.queued += encoded.size();
    loop.server->trace.queue(to.id, encoded.size(), pending(to));
    if (to.writing.empty() && !start_write(loop, to)) return;
    if (pending(to) > loop.server->options.limits.max_pending) hold_back(loop, from, to);
}

bool start_write(Loop& loop, Client& client) {
    std::swap(client.writing, client.output);
    client.output.clear();
    uv_buf_t buf = uv_buf_init(client.writing.data(), static_cast<unsigned>(client.writing.size()));
    if (int rc = uv_write(&client.write_req, reinterpret_cast<uv_stream_t*>(&client.handle), &buf,
                          1, on_write_done);
        rc != 0) {
        close_client(loop, client, uv_strerror(rc));
        return false;
    }
    return true;
}

// ---------------------------------------------------------------------------
// Flow control across loops

// `receiver` (ours) is over the mark because of `sender` (anyone's): the
// sender's loop stops reading it. Ours: at once. Another loop's: by message
// -- until it arrives, that loop may relay a little more (what it reads in
// one turn), which lands in our queue: the bound, written in the README, is
// the mark plus one read per other loop.
void hold_back(Loop& loop, Sender sender, Client& receiver) {
    for (const Sender& s : receiver.holding_back) {
        if (s.id == sender.id) return;  // held back already
    }
    receiver.holding_back.push_back(sender);
    loop.server->trace.pause(sender.id, receiver.id, pending(receiver));
    if (sender.loop == &loop) return pause_reading(loop, sender.id, receiver.id);
    post(*sender.loop,
         {.kind = Message::Kind::pause, .client = sender.id, .receiver = receiver.id});
}

// On the sender's loop: no more uv_read for it until `receiver` drains.
void pause_reading(Loop& loop, int sender_id, int receiver) {
    Client* sender = find_client(loop, sender_id);
    if (!sender) return;  // gone meanwhile
    auto& waits = sender->waiting_for;
    if (std::find(waits.begin(), waits.end(), receiver) != waits.end()) return;
    if (waits.empty()) uv_read_stop(reinterpret_cast<uv_stream_t*>(&sender->handle));
    waits.push_back(receiver);
}

void on_write_done(uv_write_t* req, int status) {
    Client& client = *static_cast<Client*>(req->data);
    Loop& loop = *client.loop;
    const auto span = loop.server->trace.span("on_write_done", client.id);
    const std::size_t written = client.writing.size();
    loop.queued -= written;
    client.writing.clear();
    if (client.writing.capacity() > 64 * 1024) client.writing = std::string();
    if (status == UV_ECANCELED) return;  // close_client already ran
    if (status < 0) return close_client(loop, client, uv_strerror(status));
    client.last_progress = Clock::now();
    loop.server->trace.write(client.id, written, pending(client));
    if (!client.output.empty() && !start_write(loop, client)) return;
    if (!client.holding_back.empty() &&
        pending(client) <= loop.server->options.limits.low_water()) {
        resume_senders(loop, client);
    }
    if (client.closing && pending(client) == 0) {
        close_client(loop, client, loop.stopping ? "server shutting down" : "end of stream");
    }
}

// `receiver` drained below the low-water mark, or is gone: every sender it
// held back is told, each on its own loop.
void resume_senders(Loop& loop, Client& receiver) {
    for (const Sender& s : std::exchange(receiver.holding_back, {})) {
        if (s.loop == &loop) {
            resume_reading(loop, s.id, receiver.id);
        } else {
            post(*s.loop, {.kind = Message::Kind::resume, .client = s.id, .receiver = receiver.id});
        }
    }
}

// On the sender's loop: one receiver fewer to wait for; at none, read again
// -- first the frames already in its decoder.
void resume_reading(Loop& loop, int sender_id, int receiver) {
    Client* sender = find_client(loop, sender_id);
    if (!sender || std::erase(sender->waiting_for, receiver) == 0) return;
    if (!sender->waiting_for.empty()) return;  // still held back by another
    loop.server->trace.resume(sender->id);
    if (sender->closing) return;
    start_reading(*sender);
    relay_frames(loop, *sender);
}

void check_stalled(uv_timer_t* timer) {
    Loop& loop = *static_cast<Loop*>(timer->data);
    const auto now = Clock::now();
    const auto stall_timeout = loop.server->options.limits.stall_timeout;
    const std::vector<Client*> clients = loop.clients;
    for (Client* client : clients) {
        if (pending(*client) > 0 && now - client->last_progress >= stall_timeout) {
            close_client(loop, *client,
                         fmt::format("stalled: took no byte for {} ms, {} bytes pending",
                                     stall_timeout.count(), pending(*client)));
        }
    }
}

void close_client(Loop& loop, Client& client, std::string_view reason) {
    auto* handle = reinterpret_cast<uv_handle_t*>(&client.handle);
    if (uv_is_closing(handle)) return;
    loop.server->trace.close(client.id, reason);
    log("client {} disconnected: {}", client.id, reason);
    std::erase(loop.clients, &client);
    resume_senders(loop, client);  // nobody waits for a closed client
    uv_close(handle, [](uv_handle_t* h) {
        Client* closed = static_cast<Client*>(h->data);
        Loop& l = *closed->loop;
        l.queued -= closed->output.size();  // (`writing` came back cancelled)
        delete closed;
        maybe_finish(l);
    });
}

// ---------------------------------------------------------------------------
// Shutdown: loop 0 catches the signal and tells every loop

void begin_shutdown(uv_signal_t* signal, int signum) {
    Server& server = *static_cast<Server*>(signal->data);
    if (server.stopping) {
        std::size_t queued = 0;
        for (const auto& loop : server.loops)
            queued += loop->queued;
        logs::exit_now(queued);
    }
    server.stopping = true;
    log("{} received, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close(reinterpret_cast<uv_handle_t*>(&server.acceptor), nullptr);
    server.listener.reset();
    for (const auto& loop : server.loops)
        post(*loop, {.kind = Message::Kind::stop});  // after any adopt posted before it
}

// On each loop: stage 03's shutdown, for this loop's clients.
void begin_stop(Loop& loop) {
    if (loop.stopping) return;  // (begun already by a read that saw the flag)
    loop.stopping = true;
    const std::vector<Client*> clients = loop.clients;
    for (Client* client : clients) {
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&client->handle));
        client->closing = true;
        if (pending(*client) == 0) close_client(loop, *client, "server shutting down");
    }
    uv_timer_start(
        &loop.grace_timer,
        [](uv_timer_t* timer) {
            Loop& l = *static_cast<Loop*>(timer->data);
            const std::vector<Client*> left = l.clients;
            for (Client* client : left)
                close_client(l, *client, "server shutting down: output not flushed in time");
        },
        static_cast<std::uint64_t>(loop.server->options.limits.shutdown_grace.count()), 0);
    maybe_finish(loop);
}

// No post reaches the loop from now on; a socket still on its way to it is
// closed here, not leaked.
void close_inbox(Loop& loop) {
    std::lock_guard lock(loop.mutex);
    loop.open = false;
    for (const Message& m : std::exchange(loop.inbox, {})) {
        if (m.kind == Message::Kind::adopt) ::close(m.fd);
    }
}

// A stopping loop with no client left closes its handles, and uv_run returns.
// Loop 0 also holds the signals (a second one must still find us) and the
// inbox the others report to: it closes once every loop has finished.
void maybe_finish(Loop& loop) {
    if (!loop.stopping || !loop.clients.empty() || loop.finished) return;
    loop.finished = true;
    for (auto* handle : {reinterpret_cast<uv_handle_t*>(&loop.stall_timer),
                         reinterpret_cast<uv_handle_t*>(&loop.grace_timer),
                         reinterpret_cast<uv_handle_t*>(&loop.idle.before_poll),
                         reinterpret_cast<uv_handle_t*>(&loop.idle.after_poll)}) {
        uv_close(handle, nullptr);
    }
    if (loop.index == 0) return loop_finished(*loop.server);
    close_inbox(loop);
    uv_close(reinterpret_cast<uv_handle_t*>(&loop.wakeup), nullptr);
    post(*loop.server->loops[0], {.kind = Message::Kind::finished});
}

// On loop 0: one more loop has finished. The last one closes loop 0's own.
void loop_finished(Server& server) {
    if (--server.loops_running > 0) return;
    Loop& first = *server.loops[0];
    close_inbox(first);
    for (auto* handle : {reinterpret_cast<uv_handle_t*>(&first.wakeup),
                         reinterpret_cast<uv_handle_t*>(&server.sigint),
                         reinterpret_cast<uv_handle_t*>(&server.sigterm)}) {
        uv_close(handle, nullptr);
    }
}

// ---------------------------------------------------------------------------

void init_loop(Server& server, Loop& loop, int index, std::size_t loops) {
    loop.server = &server;
    loop.index = index;
    loop.posted_to.resize(loops);
    loop.held_for.resize(loops);
    uv_loop_init(&loop.uv);
    uv_async_init(&loop.uv, &loop.wakeup, on_messages);
    loop.wakeup.data = &loop;
    const auto check_every = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(server.options.limits.stall_timeout.count() / 4));
    uv_timer_init(&loop.uv, &loop.stall_timer);
    loop.stall_timer.data = &loop;
    uv_timer_start(&loop.stall_timer, check_stalled, check_every, check_every);
    uv_timer_init(&loop.uv, &loop.grace_timer);
    loop.grace_timer.data = &loop;
    net::trace_idle(&loop.uv, loop.idle);
    // libuv opens a spare descriptor per loop with its first stream (its own
    // EMFILE reserve, as stage 02 keeps one). Open it now: from the start,
    // every descriptor the server adds is a client's.
    uv_tcp_init(&loop.uv, &loop.first_stream);
    uv_close(reinterpret_cast<uv_handle_t*>(&loop.first_stream), nullptr);
}

// Each thread: run its loop until it has finished, then check it closed clean.
bool run_loop(Loop& loop) {
    uv_run(&loop.uv, UV_RUN_DEFAULT);
    if (int rc = uv_loop_close(&loop.uv); rc != 0) {
        log("error: loop {}: uv_loop_close: {}", loop.index, uv_strerror(rc));
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    Server server;
    server.options = cli::parse_server(
        {.name = "epilogue/multiloop_server",
         .summary = "one libuv loop per core, messages between them",
         .options = {{.name = "--loops",
                      .value = "N",
                      .help = "        event loops, one thread each (default: one per core)"},
                     {.name = "--reuse-port",
                      .value = "",
                      .help = "    share the port with other processes (SO_REUSEPORT)"}}},
        {argv, static_cast<std::size_t>(argc)});
    server.trace = logs::Trace(server.options.trace);
    unsigned loops = std::max(1u, std::thread::hardware_concurrency());
    if (auto it = server.options.extra.find("--loops"); it != server.options.extra.end()) {
        const int n = std::atoi(it->second.c_str());
        if (n < 1 || n > 64) {
            fmt::print(stderr, "--loops: expected 1 to 64, got '{}'\n", it->second);
            return 2;
        }
        loops = static_cast<unsigned>(n);
    }

    try {
        // --reuse-port: several processes on one port, each with its own
        // descriptor limit (the README's part 2, c100k).
        server.listener = net::listen_tcp(server.options.host, server.options.port, SOMAXCONN,
                                          server.options.extra.contains("--reuse-port"));
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    net::set_nonblocking(server.listener.get());
    for (unsigned i = 0; i < loops; ++i) {
        server.loops.push_back(std::make_unique<Loop>());
        init_loop(server, *server.loops.back(), static_cast<int>(i), loops);
    }
    server.loops_running = loops;
    Loop& first = *server.loops[0];
    uv_poll_init_socket(&first.uv, &server.acceptor, server.listener.get());
    server.acceptor.data = &server;
    uv_poll_start(&server.acceptor, UV_READABLE, accept);
    for (uv_signal_t* signal : {&server.sigint, &server.sigterm}) {
        uv_signal_init(&first.uv, signal);
        signal->data = &server;
    }
    uv_signal_start(&server.sigint, begin_shutdown, SIGINT);
    uv_signal_start(&server.sigterm, begin_shutdown, SIGTERM);

    net::announce_listening(server.listener.get());
    log("mode: {} libuv loops, {}, senders paused past {} bytes pending, stall timeout {} ms",
        loops, server.options.echo ? "echo" : "relay", server.options.limits.max_pending,
        server.options.limits.stall_timeout.count());

    std::atomic<bool> clean{true};
    for (unsigned i = 1; i < loops; ++i) {
        Loop& loop = *server.loops[i];
        loop.thread = std::thread([&loop, &clean] {
            if (!run_loop(loop)) clean = false;
        });
    }
    if (!run_loop(first)) clean = false;
    for (unsigned i = 1; i < loops; ++i)
        server.loops[i]->thread.join();
    if (!clean) return 1;
    log("bye");
    return 0;
}
