// Stage 04: C++20 coroutines on libuv, with an asyncio-shaped API.
//
// The same event loop as stage 03, but each connection reads as one straight
// piece of code -- the talk's handle_connection:
//
//   while (auto payload = co_await frames.next())   // suspends until a frame is in
//       on_frame(...);                              // relay it to the others
//
// co_await suspends this connection's coroutine and returns to the loop; libuv
// resumes it when bytes arrive. The state that stage 03 kept in structs and
// passed between callbacks is back in local variables. The runtime that makes
// this work (task.hpp, runtime.hpp, streams.hpp) is ours, built on libuv.
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"
#include "frame.hpp"
#include "log.hpp"
#include "runtime.hpp"
#include "streams.hpp"

using coro::Task;
using logs::log;

namespace {

// The most we queue for one client that is not reading (as in 02 and 03).
constexpr std::size_t max_pending_default = 4 * 1024 * 1024;
constexpr std::chrono::milliseconds shutdown_grace{5000};

struct Client {
    int id = 0;
    std::string peer;
    coro::StreamWriter writer;
};

struct Server {
    cli::ServerOptions options;
    logs::Trace trace{false};
    std::size_t max_pending = max_pending_default;
    std::vector<Client*> clients;  // each Client lives in its connection's coroutine
    int next_id = 1;
    bool stopping = false;
    coro::Event all_gone;  // set when stopping and the last client has left
};

void on_frame(Server& server, Client& from, const std::string& payload);
void broadcast(Server& server, const Client& from, const std::shared_ptr<const std::string>& frame);
void send_frame(Server& server, Client& to, const std::shared_ptr<const std::string>& frame);
void close_client(Server& server, Client& client, std::string_view reason);

void accept(Server& server, Client& client) {
    client.id = server.next_id++;
    client.peer = client.writer.peer();
    client.writer.on_written(
        [&server, id = client.id](std::size_t n) { server.trace.write(id, n); });
    server.clients.push_back(&client);
    log("client {} connected from {}", client.id, client.peer);
    server.trace.accept(client.id, client.peer);
}

// One coroutine per connection, from accept to close.
Task<void> handle_connection(Server& server, coro::StreamReader reader, coro::StreamWriter writer) {
    Client client;
    client.writer = writer;
    if (server.stopping) co_return;  // (its writer closes with the last reference)
    accept(server, client);
    std::string reason = "end of stream";
    try {
        coro::FrameReader frames(reader, server.options.max_frame);
        frames.on_bytes = [&](std::size_t n) { server.trace.read(client.id, n); };
        // ANCHOR: frame-loop
        while (auto payload = co_await frames.next()) {
            on_frame(server, client, *payload);
            // Echo: this client is the one receiving, so it is the one to slow
            // down if it reads slowly -- wait for its queue to drain.
            if (server.options.echo) co_await client.writer.drain();
        }
        // ANCHOR_END: frame-loop
    } catch (const coro::IncompleteReadError&) {
        reason = "end of stream in the middle of a frame (dropped)";
    } catch (const coro::FrameError& e) {
        reason = e.what();
    } catch (const coro::ConnectionError& e) {
        reason = e.what();
    }
    close_client(server, client, reason);
    co_await client.writer.wait_closed();  // `client` must outlive its last write callback
}

void on_frame(Server& server, Client& from, const std::string& payload) {
    server.trace.frame(from.id, payload.size());
    auto frame = std::make_shared<const std::string>(frame::encode(payload));
    if (server.options.echo) {
        send_frame(server, from, frame);
    } else {
        broadcast(server, from, frame);
    }
}

void broadcast(Server& server, const Client& from,
               const std::shared_ptr<const std::string>& frame) {
    const std::vector<Client*> receivers = server.clients;  // send_frame may unlist one
    for (Client* to : receivers) {
        if (to != &from) send_frame(server, *to, frame);
    }
}

// Queue a frame without waiting: the sender must not wait for a slow
// receiver. Instead the receiver's queue is bounded.
void send_frame(Server& server, Client& to, const std::shared_ptr<const std::string>& frame) {
    if (to.writer.is_closing()) return;
    if (to.writer.buffered() + frame->size() > server.max_pending) {
        close_client(server, to,
                     fmt::format("not reading: over {} bytes pending", server.max_pending));
        to.writer.abort();  // do not flush 4 MiB to a client that is not reading
        return;
    }
    to.writer.write(frame);  // shared, not copied
    server.trace.queue(to.id, frame->size());
}

// Unlist the client and close its connection (after writing what is queued).
// Its coroutine, if waiting for a frame, sees the end of the stream and ends.
void close_client(Server& server, Client& client, std::string_view reason) {
    if (std::erase(server.clients, &client) == 0) return;  // already closed
    server.trace.close(client.id, reason);
    log("client {} disconnected: {}", client.id, reason);
    client.writer.close();
    if (server.stopping && server.clients.empty()) server.all_gone.set();
}

// Wait for SIGINT/SIGTERM, then stop accepting, let queued frames go out
// (within the grace period), and close every client.
Task<void> serve(Server& server) {
    coro::Server listener = co_await coro::start_server(
        [&server](coro::StreamReader reader, coro::StreamWriter writer) {
            return handle_connection(server, std::move(reader), std::move(writer));
        },
        server.options.host, server.options.port);
    // Catch the signals before we say we are ready: a SIGTERM that comes
    // right after "listening on" must stop us gracefully, not kill us.
    coro::SignalWatch stop_signals({SIGINT, SIGTERM});
    fmt::print("listening on {}\n", listener.address());
    std::fflush(stdout);
    log("mode: coroutines, {}, at most {} bytes pending per client",
        server.options.echo ? "echo" : "relay", server.max_pending);

    const int signal = co_await stop_signals.wait();
    log("{} received, shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
    server.stopping = true;
    listener.close();
    if (server.clients.empty()) server.all_gone.set();
    for (Client* client : std::vector<Client*>(server.clients)) {
        close_client(server, *client, "server shutting down");
    }
    try {
        co_await coro::wait_for(server.all_gone.wait(), shutdown_grace);
    } catch (const coro::TimeoutError&) {
        log("shutdown: gave up flushing to slow clients");
    }
    co_await listener.wait_closed();
}

}  // namespace

int main(int argc, char** argv) {
    Server server;
    server.options = cli::parse_server(
        {.name = "04_coroutines/server", .summary = "C++20 coroutines on libuv (asyncio style)"},
        {argv, static_cast<std::size_t>(argc)});
    server.trace = logs::Trace(server.options.trace);
    server.max_pending = std::max<std::size_t>(max_pending_default,
                                               2 * (server.options.max_frame + frame::header_size));
    try {
        // Like asyncio.run(): runs until serve() returns, then cancels what is
        // left (connections still flushing) and closes every handle.
        coro::run(serve(server));
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    log("bye");
    return 0;
}
