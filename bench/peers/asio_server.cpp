// A peer for the benchmark: the same protocol on standalone Asio (Debian's
// libasio-dev) with C++20 coroutines, written the way Asio's own chat example
// is: a reader coroutine and a writer coroutine per session, and a timer used
// as a wake-up signal for the writer.
#include <asio.hpp>

#include <cstdio>
#include <deque>
#include <memory>
#include <set>
#include <string>

#include "cli.hpp"
#include "frame.hpp"

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

constexpr std::size_t max_pending = 4 * 1024 * 1024;

struct Session;
struct Room {
    std::set<std::shared_ptr<Session>> sessions;
};

struct Session : std::enable_shared_from_this<Session> {
    Session(tcp::socket s) : socket(std::move(s)), wake(socket.get_executor()) {
        wake.expires_at(asio::steady_timer::time_point::max());
    }
    void deliver(std::shared_ptr<const std::string> frame) {
        if (pending + frame->size() > max_pending) {
            socket.close();  // not reading: drop it
            return;
        }
        pending += frame->size();
        queue.push_back(std::move(frame));
        wake.cancel_one();
    }
    awaitable<void> writer() {
        try {
            while (socket.is_open()) {
                if (queue.empty()) {
                    asio::error_code ec;
                    co_await wake.async_wait(asio::redirect_error(use_awaitable, ec));
                    continue;
                }
                auto frame = queue.front();
                co_await asio::async_write(socket, asio::buffer(*frame), use_awaitable);
                queue.pop_front();
                pending -= frame->size();
            }
        } catch (const std::exception&) {
            socket.close();
        }
    }
    tcp::socket socket;
    asio::steady_timer wake;
    std::deque<std::shared_ptr<const std::string>> queue;
    std::size_t pending = 0;
};

awaitable<void> reader(std::shared_ptr<Session> self, Room& room,
                       const cli::ServerOptions& options) {
    room.sessions.insert(self);
    try {
        frame::Decoder decoder(options.max_frame);
        char buffer[64 * 1024];
        while (true) {
            std::size_t n =
                co_await self->socket.async_read_some(asio::buffer(buffer), use_awaitable);
            decoder.feed({buffer, n});
            while (auto payload = decoder.next()) {
                auto frame = std::make_shared<const std::string>(frame::encode(*payload));
                if (options.echo) {
                    self->deliver(frame);
                } else {
                    for (const auto& other : room.sessions) {
                        if (other != self) other->deliver(frame);
                    }
                }
            }
            if (decoder.failed()) break;
        }
    } catch (const std::exception&) {
    }
    room.sessions.erase(self);
    self->socket.close();
    self->wake.cancel();
}

awaitable<void> listen(tcp::acceptor& acceptor, Room& room, const cli::ServerOptions& options) {
    while (true) {
        tcp::socket socket = co_await acceptor.async_accept(use_awaitable);
        socket.set_option(tcp::no_delay(true));
        auto session = std::make_shared<Session>(std::move(socket));
        asio::co_spawn(acceptor.get_executor(), reader(session, room, options), asio::detached);
        asio::co_spawn(acceptor.get_executor(), session->writer(), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const auto options =
        cli::parse_server({.name = "bench/asio_server", .summary = "Asio C++20 coroutines peer"},
                          {argv, static_cast<std::size_t>(argc)});
    asio::io_context io(1);
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address(options.host), options.port));
    asio::signal_set signals(io, SIGINT, SIGTERM);  // before "listening on"
    signals.async_wait([&](auto, auto) { io.stop(); });
    const auto local = acceptor.local_endpoint();
    if (local.address().is_v6()) {
        std::printf("listening on [%s]:%u\n", local.address().to_string().c_str(), local.port());
    } else {
        std::printf("listening on %s:%u\n", local.address().to_string().c_str(), local.port());
    }
    std::fflush(stdout);
    Room room;
    asio::co_spawn(io, listen(acceptor, room, options), asio::detached);
    io.run();
    return 0;
}
