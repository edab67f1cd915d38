// Stage 04: C++20 coroutines on libuv, with an asyncio-shaped API.
//
// The same event loop as stage 03, but each connection reads as one straight
// piece of code -- the talk's handle_connection:
//
//   while (auto payload = co_await frames.next())   // suspends until a frame is in
//       on_frame(...);                              // relay it to the others
//
// co_await suspends this connection's coroutine and returns to the loop; the
// loop resumes it once a whole frame has arrived. The state that stage 03
// kept in structs and passed between callbacks is back in local variables;
// and flow control is asyncio's: write(), then `co_await drain()`. The runtime that makes
// this work (coro/, read in the order coro/README.md gives) is ours, on libuv;
// frame_reader.hpp puts our wire protocol on top of its streams.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "coro/loop.hpp"
#include "coro/streams.hpp"
#include "frame.hpp"
#include "frame_reader.hpp"
#include "log.hpp"
#include "net.hpp"
#include "trace_steps.hpp"
#include "work.hpp"

using coro::Coroutine;
using logs::log;
using Clock = std::chrono::steady_clock;

namespace {

struct Client {
    int id = 0;
    std::string peer;
    coro::StreamWriter writer;
    Clock::time_point last_progress;  // when a write to it last completed (the stall clock)
    // However its coroutine ends -- even through an exception nobody foresaw
    // -- the connection ends with the Client.
    ~Client() { writer.abort(); }
};

struct Server {
    cli::ServerOptions options;
    logs::Trace trace{false};
    // Shared with each connection's coroutine: a Client lives as long as
    // anyone holds it, so nothing here can point into a frame that is gone.
    std::vector<std::shared_ptr<Client>> clients;
    int next_id = 1;
    bool stopping = false;
    // Once stopping: the clients still flushing, whose queues a second
    // signal would drop (weak: a Client goes with its coroutine).
    std::vector<std::weak_ptr<Client>> flushing;
    bool offload = false;  // --offload: --work runs on libuv's thread pool (to_thread)
};

using Receivers = std::vector<std::shared_ptr<Client>>;  // the ones a frame took over the mark

Receivers on_frame(Server& server, Client& from, const std::string& payload);
void broadcast(Server& server, Client& from, std::string_view frame, Receivers& full);
void send_frame(Server& server, Client& to, std::string_view frame, Receivers& full);
Coroutine<void> pause_reading(Server& server, Client& sender, Client& receiver);
Coroutine<void> offload_work(Server& server, Client& from, const std::string& payload);
void close_client(Server& server, Client& client, std::string_view reason);

std::shared_ptr<Client> accept(Server& server, coro::StreamWriter writer) {
    auto client = std::make_shared<Client>();
    client->id = server.next_id++;
    client->peer = writer.peer();
    client->writer = std::move(writer);
    // drain() waits above the high-water mark, until below the low one.
    client->writer.set_write_buffer_limits(server.options.limits.max_pending,
                                           server.options.limits.low_water());
    // (A plain pointer: once ~Client has aborted the writer, on_written is
    // called no more.)
    client->writer.on_written([&server, c = client.get()](std::size_t n) {
        c->last_progress = Clock::now();
        server.trace.write(c->id, n, c->writer.write_buffer_size());
    });
    server.clients.push_back(client);
    log("client {} connected from {}", client->id, client->peer);
    server.trace.accept(client->id, client->peer);
    return client;
}

// One coroutine per connection, from accept to close.
Coroutine<void> handle_connection(Server& server, coro::StreamReader reader,
                                  coro::StreamWriter writer) {
    if (server.stopping) co_return;  // (its writer closes with the last reference)
    std::shared_ptr<Client> client = accept(server, std::move(writer));
    std::string reason = "end of stream";
    try {
        frame::FrameReader frames(reader, server.options.max_frame);
        frames.on_bytes = [&](std::size_t n) { server.trace.read(client->id, n); };
        // ANCHOR: frame-loop
        while (auto payload = co_await frames.next()) {
            if (server.offload) co_await offload_work(server, *client, *payload);
            // Backpressure, the asyncio way: write() to each receiver, then
            // drain() the ones it took over the mark -- and read nothing from
            // our own client meanwhile.
            for (const auto& to : on_frame(server, *client, *payload))
                co_await pause_reading(server, *client, *to);
        }
        // ANCHOR_END: frame-loop
    } catch (const coro::IncompleteReadError& e) {
        reason = fmt::format("end of stream in the middle of a frame (dropped): {}", e.what());
    } catch (const frame::FrameError& e) {
        reason = e.what();
    } catch (const coro::ConnectionError& e) {
        reason = e.what();
    }
    close_client(server, *client, reason);
    try {
        co_await client->writer.wait_closed();  // what is queued goes out first
    } catch (const coro::CancelledError&) {
        // The server's grace period is over (see serve): ~Client drops the rest.
        log("client {}: output not flushed in time, cutting it", client->id);
        throw;
    }
}

// --work --offload, asyncio's way: `await asyncio.to_thread(f)`. The work
// runs on libuv's thread pool while the loop serves everyone else; this
// connection's coroutine waits for it, so its frames stay in order.
Coroutine<void> offload_work(Server& server, Client& from, const std::string& payload) {
    const auto work = server.options.work;
    co_await coro::to_thread([&payload, work] { return work::crunch(payload, work); });
    server.trace.work(from.id, work.count());
}

// Relays (or echoes) one frame; returns the receivers it took over the mark.
Receivers on_frame(Server& server, Client& from, const std::string& payload) {
    const auto span = server.trace.span("on_frame", from.id);
    server.trace.frame(from.id, payload.size());
    // --work: a CPU-bound handler, on the loop's one thread: while it runs,
    // no other coroutine does. (With --offload, offload_work did it already.)
    if (server.options.work.count() > 0 && !server.offload) {
        work::crunch(payload, server.options.work);
        server.trace.work(from.id, server.options.work.count());
    }
    const std::string frame = frame::encode(payload);  // once; each write() copies it
    Receivers full;
    if (server.options.echo) {
        send_frame(server, from, frame, full);
    } else {
        broadcast(server, from, frame, full);
    }
    return full;
}

void broadcast(Server& server, Client& from, std::string_view frame, Receivers& full) {
    for (const auto& to : server.clients) {
        if (to.get() != &from) send_frame(server, *to, frame, full);
    }
}

// Queue a frame without waiting -- write() never blocks. Whether the sender
// waits is decided after, in pause_reading.
void send_frame(Server& server, Client& to, std::string_view frame, Receivers& full) {
    if (to.writer.is_closing()) return;
    if (to.writer.write_buffer_size() == 0)
        to.last_progress = Clock::now();  // the stall clock starts
    to.writer.write(frame);  // copied into its queue: one buffer per receiver, not per frame
    server.trace.queue(to.id, frame.size(), to.writer.write_buffer_size());
    // The frame is queued whatever the size of the queue: a reader that keeps
    // reading never loses one. But past the mark its sender waits for it to
    // drain, so TCP slows that sender down and the queue cannot grow.
    if (to.writer.write_buffer_size() > server.options.limits.max_pending) {
        // (It may be `from` itself, in echo mode.)
        auto it = std::find_if(server.clients.begin(), server.clients.end(),
                               [&](const auto& c) { return c.get() == &to; });
        if (it != server.clients.end()) full.push_back(*it);
    }
}

// The sender's coroutine waits here, reading nothing, until `receiver` is
// below the low-water mark -- or is closed (drain() returns then too).
Coroutine<void> pause_reading(Server& server, Client& sender, Client& receiver) {
    server.trace.pause(sender.id, receiver.id, receiver.writer.write_buffer_size());
    try {
        co_await receiver.writer.drain();
    } catch (const coro::ConnectionError&) {
        // The receiver's write failed: its own coroutine reports and closes it.
    }
    server.trace.resume(sender.id);
}

// A receiver with writes waiting none of which completed for the stall
// timeout is not reading at all: cut it, so the senders it held back go on.
// (Stage 03's timer callback; here a task that sleeps between checks.)
Coroutine<void> check_stalled(Server& server) {
    const auto stall_timeout = server.options.limits.stall_timeout;
    // Four checks per stall timeout: a stalled client is cut within 1.25 of it.
    const auto check_every = std::max(stall_timeout / 4, std::chrono::milliseconds(1));
    while (true) {
        co_await coro::sleep(check_every);
        const auto now = Clock::now();
        for (const auto& client : Receivers(server.clients)) {
            if (client->writer.write_buffer_size() > 0 &&
                now - client->last_progress >= stall_timeout) {
                close_client(
                    server, *client,
                    fmt::format("stalled: took no byte for {} ms, {} bytes pending",
                                stall_timeout.count(), client->writer.write_buffer_size()));
                client->writer.abort();  // do not wait to flush to a client that is not reading
            }
        }
    }
}

// Unlist the client and close its connection (after writing what is queued).
// Its coroutine, if waiting for a frame, sees the end of the stream and ends.
void close_client(Server& server, Client& client, std::string_view reason) {
    auto listed = std::find_if(server.clients.begin(), server.clients.end(),
                               [&](const auto& c) { return c.get() == &client; });
    if (listed == server.clients.end()) return;  // already closed
    server.clients.erase(listed);
    server.trace.close(client.id, reason);
    log("client {} disconnected: {}", client.id, reason);
    client.writer.close();
}

// SIGINT/SIGTERM: stop accepting, and close every client once what is queued
// for it has gone out. serve() then waits for their coroutines to end, for at
// most the grace period.
void begin_shutdown(Server& server, coro::Server& listener, int signal) {
    log("{} received, shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
    server.stopping = true;
    listener.close();
    for (const auto& client : Receivers(server.clients)) {
        server.flushing.push_back(client);
        close_client(server, *client, "server shutting down");
    }
}

// A second signal during the grace period: exit at once.
Coroutine<void> exit_on_second_signal(Server& server, coro::SignalWatch& signals) {
    co_await signals.wait();
    std::size_t queued = 0;
    for (const auto& weak : server.flushing) {
        if (auto client = weak.lock()) queued += client->writer.write_buffer_size();
    }
    logs::exit_now(queued);
}

// Serve until SIGINT/SIGTERM, then shut down: the whole life of the server,
// as one coroutine.
Coroutine<void> serve(Server& server) {
    // Every connection's task joins this group, and serve() does not return
    // before they have all finished: structured concurrency.
    coro::TaskGroup connections;
    coro::Server listener = co_await coro::start_server(
        [&server](coro::StreamReader reader, coro::StreamWriter writer) {
            return handle_connection(server, std::move(reader), std::move(writer));
        },
        server.options.host, server.options.port, connections);
    // Catch the signals before we say we are ready: a SIGTERM that comes
    // right after "listening on" must stop us gracefully, not kill us.
    coro::SignalWatch stop_signals({SIGINT, SIGTERM});
    net::announce_listening(listener.address());
    log("mode: coroutines, {}, senders paused past {} bytes pending, stall timeout {} ms",
        server.options.echo ? "echo" : "relay", server.options.limits.max_pending,
        server.options.limits.stall_timeout.count());
    coro::TaskGroup watchers;
    watchers.create_task(check_stalled(server));

    const int signal = co_await stop_signals.wait();
    begin_shutdown(server, listener, signal);
    watchers.create_task(exit_on_second_signal(server, stop_signals));
    bool in_time = true;
    try {
        co_await coro::wait_for(connections.wait(), server.options.limits.shutdown_grace);
    } catch (const coro::TimeoutError&) {
        in_time = false;  // (no co_await inside a catch block)
    }
    if (!in_time) {
        connections.cancel();  // each one cuts its client (see handle_connection)
        co_await connections.wait();
    }
    watchers.cancel();
    co_await watchers.wait();
    co_await listener.wait_closed();
}

}  // namespace

int main(int argc, char** argv) {
    Server server;
    server.options = cli::parse_server(
        {.name = "04_coroutines/server",
         .summary = "C++20 coroutines on libuv (asyncio style)",
         .options = {{.name = "--offload",
                      .value = "",
                      .help = "  run --work on libuv's thread pool (coro::to_thread)"}}},
        {argv, static_cast<std::size_t>(argc)});
    server.trace = logs::Trace(server.options.trace);
    server.offload = server.options.extra.contains("--offload") && server.options.work.count() > 0;
    trace_steps::start();  // --trace-json: each task's steps on the timeline
    try {
        // Like asyncio.run(): runs until serve() returns -- and serve() has
        // waited for every connection -- then closes every handle.
        coro::run(serve(server));
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    log("bye");
    return 0;
}
