// Stage 01: blocking I/O -- the server everyone writes first.
//
// Every socket call here blocks: accept() waits for a connection, recv() waits
// for bytes, send() waits for room in the kernel's buffer. While a thread waits
// it can do nothing else. The two modes show the two classic answers:
//
//   --mode iterative  (default) one thread, one client at a time. We accept a
//                     client and serve it until it leaves; anyone else who
//                     connects meanwhile waits in the kernel's accept queue.
//   --mode threads    a thread per client. Each blocking call now only blocks
//                     its own thread -- at the price of a stack per client and
//                     a mutex around everything the threads share.
//
// Read top to bottom: accept, serve_client (the read loop), on_readable,
// on_frame, broadcast, send_frame, close_client, then begin_shutdown and main.
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
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
#include "work.hpp"

using logs::log;

namespace {

struct Client {
    int id = 0;
    std::string peer;
    // Closed when the last shared_ptr<Client> goes away, so a thread that is
    // still writing to this client never writes to a reused descriptor number.
    net::Fd fd;
    std::mutex write_mutex;  // several threads may write to us: one frame at a time
};

struct Server {
    cli::ServerOptions options;
    logs::Trace trace{false};
    net::Fd listener;

    std::mutex mutex;  // guards everything below: every client thread touches it
    std::vector<std::shared_ptr<Client>> clients;
    bool stopping = false;
    int running_threads = 0;
    std::condition_variable threads_done;
    int next_id = 1;
    bool finished = false;  // main is done: the signal thread may go

    // Bytes inside a send_frame that the kernel has not taken yet: all the
    // server holds for its clients (a second signal reports them dropped).
    std::atomic<std::size_t> unsent{0};
};

void serve_client(Server& server, const std::shared_ptr<Client>& client);
bool on_readable(Server& server, Client& client, frame::Decoder& decoder, std::string_view bytes);
void on_frame(Server& server, Client& from, const std::string& payload);
void broadcast(Server& server, const Client& from, std::string_view encoded);
void send_frame(Server& server, Client& to, std::string_view encoded);
void close_client(Server& server, const std::shared_ptr<Client>& client, std::string_view reason);

bool stopping(Server& server) {
    std::lock_guard lock(server.mutex);
    return server.stopping;
}

// Registers a new client, unless we are shutting down.
std::shared_ptr<Client> add_client(Server& server, net::Fd fd) {
    auto client = std::make_shared<Client>();
    client->peer = net::peer_address(fd.get());
    client->fd = std::move(fd);
    std::lock_guard lock(server.mutex);
    if (server.stopping) return nullptr;
    client->id = server.next_id++;
    server.clients.push_back(client);
    return client;
}

// The accept loop. accept() blocks until a client connects.
void accept(Server& server) {
    const bool threaded = server.options.mode == "threads";
    while (true) {
        net::Fd fd = net::accept_connection(server.listener.get(), false);
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            {
                std::lock_guard lock(server.mutex);
                if (server.stopping) return;  // shutdown() woke us up
            }
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors. The pending connection stays queued, so
                // retrying at once would spin at 100% CPU: back off a little.
                log("out of descriptors ({}), retrying in 100 ms", std::strerror(errno));
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                continue;
            }
            log("accept failed: {}", std::strerror(errno));
            continue;
        }
        net::set_nodelay(fd.get());

        auto client = add_client(server, std::move(fd));
        if (!client) return;  // stopping: the Fd closed the connection
        log("client {} connected from {}", client->id, client->peer);
        server.trace.accept(client->id, client->peer);

        // ANCHOR: iterative
        if (!threaded) {
            // Iterative: serve this client to the end before accepting the next.
            serve_client(server, client);
            continue;
        }
        // ANCHOR_END: iterative
        {
            std::lock_guard lock(server.mutex);
            ++server.running_threads;
        }
        try {
            // ANCHOR: thread-start
            // Detached: the thread ends with its connection, and main waits for
            // running_threads to reach zero before exiting.
            std::thread([&server, client] { serve_client(server, client); }).detach();
            // ANCHOR_END: thread-start
        } catch (const std::system_error& e) {
            // Out of threads (or memory for their stacks): the cost of this model.
            {
                std::lock_guard lock(server.mutex);
                --server.running_threads;
            }
            close_client(server, client, fmt::format("cannot start a thread: {}", e.what()));
        }
    }
}

// The read loop of one client, run by its own thread (or by main when iterative).
void serve_client(Server& server, const std::shared_ptr<Client>& client) {
    frame::Decoder decoder(server.options.max_frame);
    char buffer[64 * 1024];
    std::string reason = "end of stream";
    while (true) {
        // ANCHOR: blocking-recv
        // Blocks until at least one byte arrives. It returns whatever is there:
        // maybe half a header, maybe ten frames. The decoder sorts that out.
        ssize_t n = ::recv(client->fd.get(), buffer, sizeof buffer, 0);
        // ANCHOR_END: blocking-recv
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            reason = std::strerror(errno);
            break;
        }
        if (n == 0) {  // the peer closed (or half-closed) its side -- or we are stopping
            if (decoder.mid_frame()) {
                reason = "end of stream in the middle of a frame (dropped)";
            } else if (stopping(server)) {
                reason = "server shutting down";
            }
            break;
        }
        // A graceful stop takes no new frame: what is queued goes out, and the
        // grace period is only for receivers that do not read. (The peer may
        // keep sending: shutdown(SHUT_RD) does not stop recv() returning it.)
        if (stopping(server)) {
            reason = "server shutting down";
            break;
        }
        const std::string_view bytes(buffer, static_cast<std::size_t>(n));
        if (!on_readable(server, *client, decoder, bytes)) {
            reason = decoder.error();
            break;
        }
    }
    close_client(server, client, reason);
    if (server.options.mode == "threads") {
        std::lock_guard lock(server.mutex);
        if (--server.running_threads == 0) server.threads_done.notify_all();
    }
}

// Bytes arrived: feed them to the decoder and handle every complete frame.
// Returns false when the client broke the protocol and must be disconnected.
bool on_readable(Server& server, Client& client, frame::Decoder& decoder, std::string_view bytes) {
    const auto span = server.trace.span("on_readable", client.id);  // for --trace-json
    server.trace.read(client.id, bytes.size());
    decoder.feed(bytes);
    while (auto payload = decoder.next())
        on_frame(server, client, *payload);
    return !decoder.failed();
}

void on_frame(Server& server, Client& from, const std::string& payload) {
    const auto span = server.trace.span("on_frame", from.id);
    server.trace.frame(from.id, payload.size());
    // --work: a CPU-bound handler. It runs on the sender's own thread, so
    // frames from different clients are crunched in parallel, one per core.
    if (server.options.work.count() > 0) {
        work::crunch(payload, server.options.work);
        server.trace.work(from.id, server.options.work.count());
    }
    const std::string encoded = frame::encode(payload);  // encode once, send to many
    if (server.options.echo) {
        send_frame(server, from, encoded);
    } else {
        broadcast(server, from, encoded);
    }
}

// Relay a frame to every other client.
void broadcast(Server& server, const Client& from, std::string_view encoded) {
    // Copy the list under the lock, then write without it: a slow receiver must
    // not hold up threads that only want to add or remove a client.
    std::vector<std::shared_ptr<Client>> receivers;
    {
        std::lock_guard lock(server.mutex);
        receivers = server.clients;
    }
    for (const auto& to : receivers) {
        if (to.get() != &from) send_frame(server, *to, encoded);
    }
}

// There is no on_writable in blocking code: send() simply waits until the
// kernel has room. Flow control comes free: a receiver that reads slowly
// holds back the *sender's* thread, which then stops reading, and TCP slows
// that client down. A receiver that does not read at all would hold it
// forever, so the wait ends once the kernel has taken no byte for the stall
// timeout, and we cut that receiver. (The price: one slow receiver slows
// down whoever talks to it.)
void send_frame(Server& server, Client& to, std::string_view encoded) {
    server.trace.queue(to.id, encoded.size(), encoded.size());
    std::lock_guard lock(to.write_mutex);  // frames from two senders must not interleave
    server.unsent += encoded.size();
    const bool sent = net::send_all(to.fd.get(), encoded, server.options.limits.stall_timeout);
    server.unsent -= encoded.size();
    if (!sent) {
        if (errno == ETIMEDOUT) {
            log("client {}: stalled: took no byte for {} ms, disconnecting it", to.id,
                server.options.limits.stall_timeout.count());
        } else {
            log("client {}: write failed ({}), disconnecting it", to.id, std::strerror(errno));
        }
        // Only the client's own thread closes it; we just wake that thread up.
        ::shutdown(to.fd.get(), SHUT_RDWR);
        return;
    }
    server.trace.write(to.id, encoded.size(), 0);  // nothing stays with us: the kernel has it
}

void close_client(Server& server, const std::shared_ptr<Client>& client, std::string_view reason) {
    {
        std::lock_guard lock(server.mutex);
        // While stopping, other threads may still be sending it what was
        // relayed before the signal: it stays listed, so that main can cut
        // those sends at the end of the grace period.
        if (!server.stopping) std::erase(server.clients, client);
    }
    server.trace.close(client->id, reason);
    log("client {} disconnected: {}", client->id, reason);
    // The descriptor itself closes when the last shared_ptr to the client goes.
}

// A thread blocked in accept() or recv() does not notice a flag being set, and
// a signal handler may call almost nothing. So signals are blocked everywhere
// and one thread waits for them with sigwait(); then it wakes the blocked
// calls with shutdown(), which makes them return as if the peer had left.
void begin_shutdown(Server& server, int signal) {
    std::lock_guard lock(server.mutex);
    server.stopping = true;  // before we say so: no frame read after the line is relayed
    log("{} received, shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
    ::shutdown(server.listener.get(), SHUT_RDWR);  // accept() now fails
    for (const auto& client : server.clients) {
        ::shutdown(client->fd.get(), SHUT_RD);  // recv() now returns 0
    }
}

void wait_for_signal(Server& server, sigset_t signals) {
    int signal = 0;
    ::sigwait(&signals, &signal);
    begin_shutdown(server, signal);
    // A second signal means "now" -- unless main has finished and sent it to
    // wake us up.
    ::sigwait(&signals, &signal);
    std::lock_guard lock(server.mutex);
    if (!server.finished) logs::exit_now(server.unsent);
}

}  // namespace

int main(int argc, char** argv) {
    Server server;
    server.options = cli::parse_server(
        {.name = "01_blocking/server",
         .summary = "blocking sockets: one client at a time, or a thread per client",
         .modes = {"iterative", "threads"}},
        {argv, static_cast<std::size_t>(argc)});
    server.trace = logs::Trace(server.options.trace);

    // Block SIGINT/SIGTERM before starting any thread: threads inherit the mask,
    // so only wait_for_signal ever sees them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    try {
        server.listener = net::listen_tcp(server.options.host, server.options.port);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
    net::announce_listening(server.listener.get());
    log("mode: {}, {}, stall timeout {} ms (a blocking send() is the backpressure)",
        server.options.mode, server.options.echo ? "echo" : "relay",
        server.options.limits.stall_timeout.count());

    std::thread signal_thread(wait_for_signal, std::ref(server), signals);
    accept(server);

    // Stopped accepting; wait for the client threads to finish their sends and
    // see their end of stream -- for at most the grace period. Then cut those
    // still sending to a client that does not read: send() fails at once.
    std::unique_lock lock(server.mutex);
    auto all_done = [&] { return server.running_threads == 0; };
    if (!server.threads_done.wait_for(lock, server.options.limits.shutdown_grace, all_done)) {
        for (const auto& client : server.clients) {
            log("client {}: output not flushed in time, cutting it", client->id);
            ::shutdown(client->fd.get(), SHUT_RDWR);
        }
    }
    server.threads_done.wait(lock, all_done);
    server.finished = true;
    lock.unlock();
    ::pthread_kill(signal_thread.native_handle(), SIGTERM);  // ends its second sigwait
    signal_thread.join();
    log("bye");
    return 0;
}
