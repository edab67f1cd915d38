// Stage 03: the libuv event loop, with callbacks.
//
// Stage 02's loop -- wait for readiness, then do the work -- is what libuv
// does for us (with epoll underneath, so no FD_SETSIZE, and no scan over every
// socket on each pass). We no longer ask "who is ready?"; we hand libuv
// functions to call when something happens:
//
//   uv_listen  -> accept       a connection arrived
//   uv_read    -> on_readable  bytes arrived (into a buffer from alloc_buffer)
//   uv_write   -> on_write_done  libuv has written one buffer for us (completion)
//   uv_close   -> on_closed    libuv has let go of a handle: only now free it
//   uv_signal  -> begin_shutdown  SIGINT/SIGTERM, as just another event
//   uv_timer   -> check_stalled  cut receivers that take nothing (see below)
//
// Backpressure is uv_read_stop on a sender whose frames took a receiver's
// queue over --max-pending, and uv_read_start once that receiver has drained.
//
// The lesson of this stage is *lifetimes*: libuv keeps pointers to our handles
// and buffers between the call that starts an operation and the callback that
// ends it, so neither may be freed in between. Look for "lives until".
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>
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

struct Server;

struct Client {
    uv_tcp_t handle;  // handle.data points back to this Client
    Server* server = nullptr;
    int id = 0;
    std::string peer;
    frame::Decoder decoder;
    // Output, queued as bytes, not frames: at most one uv_write in flight,
    // with `writing`; frames that come meanwhile wait in `output`, and the next
    // write takes them all. A million tiny frames cost their bytes, nothing more.
    std::string output;
    std::string writing;   // handed to uv_write: lives (and stays put) until on_write_done
    uv_write_t write_req;  // the one write in flight (write_req.data points back here)
    bool closing = false;  // no more reading; close once the writes are done
    // Flow control, as in stage 02 (common/limits.hpp). As a sender: the
    // receivers our frames took over the mark; while any is left, no uv_read.
    std::vector<int> waiting_for;
    // As a receiver: someone waits for us to drain; when a write last completed.
    bool over_mark = false;
    Clock::time_point last_progress;
    // --work --offload: a frame of ours is on the thread pool. Until it is
    // back we read no more from this client: its frames stay in order.
    bool working = false;
    bool free_after_work = false;  // closed meanwhile: on_work_done frees it
};

// One frame's --work on libuv's thread pool (uv_queue_work), from the call
// to on_work_done.
struct WorkRequest {
    uv_work_t req;  // req.data points back to this WorkRequest
    Client* client;
    std::string payload;
    std::chrono::microseconds work;
};

struct Server {
    cli::ServerOptions options;
    logs::Trace trace{false};
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    uv_timer_t stall_timer;  // runs check_stalled a few times per stall timeout
    uv_timer_t grace_timer;  // bounds the flush on shutdown
    net::IdleSpans idle;     // --trace-json: the loop's waits, on the timeline
    std::vector<Client*> clients;
    int next_id = 1;
    bool stopping = false;
    bool offload = false;  // --offload: --work runs on libuv's thread pool
    // libuv asks alloc_buffer for memory right before each read and hands it
    // to on_readable right after. We decode it there and then, so one buffer
    // serves every client. (64 KiB, in main's frame: stacks have megabytes.)
    char read_buffer[64 * 1024];
};

void on_readable(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
void relay_frames(Server& server, Client& client);
void on_frame(Server& server, Client& from, const std::string& payload);
void relay(Server& server, Client& from, const std::string& payload);
void start_work(Server& server, Client& from, const std::string& payload);
void on_work_done(uv_work_t* req, int status);
void broadcast(Server& server, Client& from, std::string_view encoded);
void send_frame(Server& server, Client& from, Client& to, std::string_view encoded);
bool start_write(Server& server, Client& client);
void pause_reading(Server& server, Client& sender, Client& receiver);
void on_write_done(uv_write_t* req, int status);
void resume_senders(Server& server, Client& receiver);
void close_client(Server& server, Client& client, std::string_view reason);
void maybe_finish(Server& server);

// What the server holds for a client: being written, and waiting behind it.
std::size_t pending(const Client& client) {
    return client.writing.size() + client.output.size();
}

void alloc_buffer(uv_handle_t* handle, std::size_t, uv_buf_t* buf) {
    Server& s = *static_cast<Client*>(handle->data)->server;
    *buf = uv_buf_init(s.read_buffer, sizeof s.read_buffer);
}

void start_reading(Client& client) {
    // ANCHOR: read-start
    uv_read_start(reinterpret_cast<uv_stream_t*>(&client.handle), alloc_buffer, on_readable);
    // ANCHOR_END: read-start
}

// Called by libuv when the listener has a connection waiting.
void accept(uv_stream_t* listener, int status) {
    Server& server = *static_cast<Server*>(listener->data);
    if (status < 0) {
        // Something went wrong with a connection. Running out of descriptors
        // rarely gets here: libuv does stage 02's spare-descriptor trick
        // itself (accept and close the waiting connections), so the loop does
        // not spin. We only report it.
        log("{}: {}", status == UV_EMFILE || status == UV_ENFILE ? "out of descriptors" : "accept",
            uv_strerror(status));
        return;
    }
    auto* client = new Client;
    client->server = &server;
    client->decoder = frame::Decoder(server.options.max_frame);
    uv_tcp_init(&server.loop, &client->handle);
    client->handle.data = client;
    client->write_req.data = client;
    if (int rc = uv_accept(listener, reinterpret_cast<uv_stream_t*>(&client->handle)); rc != 0) {
        log("accept: {}", uv_strerror(rc));
        // Even a handle that never carried a connection is freed via uv_close.
        uv_close(reinterpret_cast<uv_handle_t*>(&client->handle),
                 [](uv_handle_t* h) { delete static_cast<Client*>(h->data); });
        return;
    }
    uv_tcp_nodelay(&client->handle, 1);
    client->id = server.next_id++;
    client->peer = net::peer_of(&client->handle);
    server.clients.push_back(client);
    log("client {} connected from {}", client->id, client->peer);
    server.trace.accept(client->id, client->peer);
    start_reading(*client);
}

// ANCHOR: read-callback
// Called by libuv after each read: nread bytes, or end of stream, or an error.
void on_readable(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    Client& client = *static_cast<Client*>(stream->data);
    Server& server = *client.server;
    if (nread == 0) return;  // nothing this time (libuv's EAGAIN)
    // ANCHOR_END: read-callback
    const auto span = server.trace.span("on_readable", client.id);  // for --trace-json
    if (nread == UV_EOF) {
        uv_read_stop(stream);
        if (client.decoder.mid_frame()) {
            close_client(server, client, "end of stream in the middle of a frame (dropped)");
        } else if (pending(client) == 0) {
            close_client(server, client, "end of stream");
        } else {
            client.closing = true;  // finish our writes to it first (echo mode)
        }
        return;
    }
    if (nread < 0) {
        close_client(server, client, uv_strerror(static_cast<int>(nread)));
        return;
    }
    // ANCHOR: read-bytes
    server.trace.read(client.id, static_cast<std::size_t>(nread));
    client.decoder.feed({buf->base, static_cast<std::size_t>(nread)});
    relay_frames(server, client);
    // ANCHOR_END: read-bytes
}

// Every complete frame in the client's decoder -- until relaying one pauses
// the client: the rest wait in the decoder for resume_senders.
void relay_frames(Server& server, Client& client) {
    while (client.waiting_for.empty() && !client.closing && !client.working) {
        auto payload = client.decoder.next();
        if (!payload) break;
        on_frame(server, client, *payload);
    }
    if (client.decoder.failed()) close_client(server, client, client.decoder.error());
}

void on_frame(Server& server, Client& from, const std::string& payload) {
    const auto span = server.trace.span("on_frame", from.id);
    server.trace.frame(from.id, payload.size());
    // --work: a CPU-bound handler. Done here, on the loop's one thread, it
    // stops the whole loop while it runs. With --offload it goes to libuv's
    // thread pool instead, and on_work_done relays the frame.
    if (server.options.work.count() > 0) {
        if (server.offload) return start_work(server, from, payload);
        work::crunch(payload, server.options.work);
        server.trace.work(from.id, server.options.work.count());
    }
    relay(server, from, payload);
}

// uv_queue_work runs the first callback on a pool thread and the second
// back on the loop. The pool has several threads, so two frames of one sender
// could finish in either order: we send one at a time per sender, and stop
// reading from it until the frame is back (relay_frames checks `working`).
void start_work(Server& server, Client& from, const std::string& payload) {
    auto* request = new WorkRequest{
        .req = {}, .client = &from, .payload = payload, .work = server.options.work};
    request->req.data = request;
    from.working = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&from.handle));
    uv_queue_work(
        &server.loop, &request->req,
        [](uv_work_t* req) {  // on a pool thread: touch nothing but the request
            auto& r = *static_cast<WorkRequest*>(req->data);
            work::crunch(r.payload, r.work);
        },
        on_work_done);
}

void on_work_done(uv_work_t* req, int) {
    std::unique_ptr<WorkRequest> request(static_cast<WorkRequest*>(req->data));
    Client& client = *request->client;
    Server& server = *client.server;
    const auto span = server.trace.span("on_work_done", client.id);
    client.working = false;
    if (client.free_after_work) {  // closed while its frame was away
        delete &client;
        maybe_finish(server);
        return;
    }
    server.trace.work(client.id, request->work.count());
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&client.handle))) return;
    relay(server, client, request->payload);
    if (client.waiting_for.empty() && !client.closing) {
        start_reading(client);
        relay_frames(server, client);  // the frames that came behind it
    }
}

// Encode once, then to the others (or back, with --echo).
void relay(Server& server, Client& from, const std::string& payload) {
    const std::string encoded = frame::encode(payload);
    if (server.options.echo) {
        send_frame(server, from, from, encoded);
    } else {
        broadcast(server, from, encoded);
    }
}

void broadcast(Server& server, Client& from, std::string_view encoded) {
    // Copy the list: send_frame may close (and so unlist) a client.
    const std::vector<Client*> receivers = server.clients;
    for (Client* to : receivers) {
        if (to != &from) send_frame(server, from, *to, encoded);
    }
}

// Queue a frame for a client, and start a write unless one is in flight
// (on_write_done then starts the next, with everything queued meanwhile).
void send_frame(Server& server, Client& from, Client& to, std::string_view encoded) {
    if (to.closing) return;
    if (pending(to) == 0) to.last_progress = Clock::now();  // the stall clock starts
    to.output.append(encoded);
    server.trace.queue(to.id, encoded.size(), pending(to));
    if (to.writing.empty() && !start_write(server, to)) return;  // it failed: `to` is closed
    // The frame is queued whatever the size of the queue: a reader that keeps
    // reading never loses one. But past the mark we stop reading from the
    // sender, so TCP slows it down and the queue cannot grow without bound.
    if (pending(to) > server.options.limits.max_pending) pause_reading(server, from, to);
}

// Hand everything queued to libuv, as one write. libuv writes what it can
// right away and the rest when the socket is writable; on_write_done runs
// when all of it is written. uv_write copies the small uv_buf_t, not the bytes
// it points to: those stay in `writing`, untouched, until then.
bool start_write(Server& server, Client& client) {
    std::swap(client.writing, client.output);  // no copy: the two buffers trade places
    client.output.clear();
    uv_buf_t buf = uv_buf_init(client.writing.data(), static_cast<unsigned>(client.writing.size()));
    if (int rc = uv_write(&client.write_req, reinterpret_cast<uv_stream_t*>(&client.handle), &buf,
                          1, on_write_done);
        rc != 0) {
        close_client(server, client, uv_strerror(rc));
        return false;
    }
    return true;
}

// No more uv_read callbacks for the sender until `receiver` drains.
void pause_reading(Server& server, Client& sender, Client& receiver) {
    receiver.over_mark = true;
    if (std::find(sender.waiting_for.begin(), sender.waiting_for.end(), receiver.id) !=
        sender.waiting_for.end()) {
        return;
    }
    if (sender.waiting_for.empty()) uv_read_stop(reinterpret_cast<uv_stream_t*>(&sender.handle));
    sender.waiting_for.push_back(receiver.id);
    server.trace.pause(sender.id, receiver.id, pending(receiver));
}

// A write finished (or failed, or was cancelled because the handle is closing):
// `writing` is ours again.
//
// This is the step from readiness to completion. Stage 02's on_writable ran
// when the socket *could* take bytes, and we wrote them; here libuv has
// already written them all, and tells us it is done.
void on_write_done(uv_write_t* req, int status) {
    Client& client = *static_cast<Client*>(req->data);  // alive: its close callback comes later
    Server& server = *client.server;
    const auto span = server.trace.span("on_write_done", client.id);
    const std::size_t written = client.writing.size();
    client.writing.clear();
    // A burst may have grown it to megabytes: give that back, not keep it
    // for a client that may stay idle from now on.
    if (client.writing.capacity() > 64 * 1024) client.writing = std::string();
    if (status == UV_ECANCELED) return;  // close_client already ran
    if (status < 0) {
        close_client(server, client, uv_strerror(status));
        return;
    }
    client.last_progress = Clock::now();
    server.trace.write(client.id, written, pending(client));
    if (!client.output.empty() && !start_write(server, client)) return;  // the next batch
    if (client.over_mark && pending(client) <= server.options.limits.low_water()) {
        resume_senders(server, client);
    }
    if (client.closing && pending(client) == 0) {
        close_client(server, client, server.stopping ? "server shutting down" : "end of stream");
    }
}

// `receiver` drained below the low-water mark, or is gone: the senders that
// waited for it (and for nobody else) are read again -- first the frames
// already in their decoders.
void resume_senders(Server& server, Client& receiver) {
    receiver.over_mark = false;
    const std::vector<Client*> senders = server.clients;  // relaying may close one
    for (Client* sender : senders) {
        if (std::erase(sender->waiting_for, receiver.id) == 0) continue;
        if (!sender->waiting_for.empty()) continue;  // still held back by another
        server.trace.resume(sender->id);
        if (sender->closing || sender->working) continue;  // on_work_done reads again
        start_reading(*sender);
        relay_frames(server, *sender);
    }
}

// A receiver with writes waiting none of which completed for the stall
// timeout is not reading at all: cut it, so the senders it held back go on.
void check_stalled(uv_timer_t* timer) {
    Server& server = *static_cast<Server*>(timer->data);
    const auto now = Clock::now();
    const auto stall_timeout = server.options.limits.stall_timeout;
    const std::vector<Client*> clients = server.clients;
    for (Client* client : clients) {
        if (pending(*client) > 0 && now - client->last_progress >= stall_timeout) {
            close_client(server, *client,
                         fmt::format("stalled: took no byte for {} ms, {} bytes pending",
                                     stall_timeout.count(), pending(*client)));
        }
    }
}

// Unlist the client and ask libuv to close its handle. The memory is freed
// only in the close callback: until then libuv may still touch the handle
// (and cancelled writes still report back, pointing at this client).
void close_client(Server& server, Client& client, std::string_view reason) {
    auto* handle = reinterpret_cast<uv_handle_t*>(&client.handle);
    if (uv_is_closing(handle)) return;
    server.trace.close(client.id, reason);
    log("client {} disconnected: {}", client.id, reason);
    std::erase(server.clients, &client);
    if (client.over_mark) resume_senders(server, client);  // nobody waits for a closed client
    uv_close(handle, [](uv_handle_t* h) {
        Client* closed = static_cast<Client*>(h->data);
        Server& s = *closed->server;
        if (closed->working) {
            closed->free_after_work = true;  // its frame still points here
            return;
        }
        delete closed;
        maybe_finish(s);
    });
}

// SIGINT/SIGTERM: stop accepting and reading, let queued writes finish (for
// at most the grace period), close everything. uv_run then returns because
// no handle is left open. A second signal exits at once.
void begin_shutdown(uv_signal_t* signal, int signum) {
    Server& server = *static_cast<Server*>(signal->data);
    if (server.stopping) {
        std::size_t queued = 0;
        for (const Client* client : server.clients)
            queued += pending(*client);
        logs::exit_now(queued);
    }
    server.stopping = true;
    log("{} received, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close(reinterpret_cast<uv_handle_t*>(&server.listener), nullptr);
    const std::vector<Client*> clients = server.clients;
    for (Client* client : clients) {
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&client->handle));
        client->closing = true;
        if (pending(*client) == 0) close_client(server, *client, "server shutting down");
    }
    uv_timer_start(
        &server.grace_timer,
        [](uv_timer_t* timer) {
            Server& s = *static_cast<Server*>(timer->data);
            const std::vector<Client*> left = s.clients;
            for (Client* client : left)
                close_client(s, *client, "server shutting down: output not flushed in time");
        },
        static_cast<std::uint64_t>(server.options.limits.shutdown_grace.count()), 0);
    maybe_finish(server);
}

// The timers and the signal watchers are the last handles: close them once
// every client is gone.
void maybe_finish(Server& server) {
    if (!server.stopping || !server.clients.empty()) return;
    for (auto* handle : {reinterpret_cast<uv_handle_t*>(&server.stall_timer),
                         reinterpret_cast<uv_handle_t*>(&server.grace_timer),
                         reinterpret_cast<uv_handle_t*>(&server.sigint),
                         reinterpret_cast<uv_handle_t*>(&server.sigterm),
                         reinterpret_cast<uv_handle_t*>(&server.idle.before_poll),
                         reinterpret_cast<uv_handle_t*>(&server.idle.after_poll)}) {
        if (!uv_is_closing(handle)) uv_close(handle, nullptr);
    }
}

}  // namespace

int main(int argc, char** argv) {
    Server server;
    server.options = cli::parse_server(
        {.name = "03_libuv_callbacks/server",
         .summary = "the libuv event loop, with callbacks",
         .options = {{.name = "--offload",
                      .value = "",
                      .help = "  run --work on libuv's thread pool (uv_queue_work)"}}},
        {argv, static_cast<std::size_t>(argc)});
    server.trace = logs::Trace(server.options.trace);
    server.offload = server.options.extra.contains("--offload") && server.options.work.count() > 0;

    uv_loop_init(&server.loop);
    uv_tcp_init(&server.loop, &server.listener);
    server.listener.data = &server;
    try {
        net::listen_uv(&server.listener, server.options.host, server.options.port, accept);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    // Catch the signals before we say we are ready: a SIGTERM that comes right
    // after "listening on" must stop us gracefully, not kill us.
    for (uv_signal_t* signal : {&server.sigint, &server.sigterm}) {
        uv_signal_init(&server.loop, signal);
        signal->data = &server;
    }
    uv_signal_start(&server.sigint, begin_shutdown, SIGINT);
    uv_signal_start(&server.sigterm, begin_shutdown, SIGTERM);
    uv_timer_init(&server.loop, &server.grace_timer);
    server.grace_timer.data = &server;
    // Four checks per stall timeout: a stalled client is cut within 1.25 of it.
    const auto check_every = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(server.options.limits.stall_timeout.count() / 4));
    uv_timer_init(&server.loop, &server.stall_timer);
    server.stall_timer.data = &server;
    uv_timer_start(&server.stall_timer, check_stalled, check_every, check_every);
    net::trace_idle(&server.loop, server.idle);

    net::announce_listening(net::local_of(&server.listener));
    log("mode: libuv, {}, senders paused past {} bytes pending, stall timeout {} ms",
        server.options.echo ? "echo" : "relay", server.options.limits.max_pending,
        server.options.limits.stall_timeout.count());

    uv_run(&server.loop, UV_RUN_DEFAULT);

    // uv_run returned: no handle is active. uv_loop_close fails with UV_EBUSY if
    // one was merely forgotten rather than closed -- a leak we want to hear about.
    if (int rc = uv_loop_close(&server.loop); rc != 0) {
        log("error: uv_loop_close: {}", uv_strerror(rc));
        return 1;
    }
    log("bye");
    return 0;
}
