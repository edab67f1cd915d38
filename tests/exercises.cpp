// Tests for the exercises in the stage READMEs. They fail until you solve the
// exercise -- that is the point -- so they are not part of the normal run:
//
//   ctest --test-dir build -L exercises            # all of them
//   build/tests/exercises --gtest_filter='Exercise02Poll.*'   # one exercise
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "coro/loop.hpp"
#include "coro/streams.hpp"
#include "harness.hpp"
#include "net.hpp"
#include "resolve.hpp"
#include "stages.hpp"

using namespace harness;
using namespace std::chrono_literals;

namespace {

// A server started with extra options; a clear message if it rejects them.
std::unique_ptr<Server> start(const std::string& stage, std::vector<std::string> command,
                              const std::vector<std::string>& extra) {
    try {
        return std::make_unique<Server>(command, extra);
    } catch (const std::exception& e) {
        ADD_FAILURE() << stage << " does not start with the exercise's options yet:\n" << e.what();
        return nullptr;
    }
}

// 01, exercise 1: --max-clients N for the thread-per-client server.
TEST(Exercise01MaxClients, MaxClientsRefusesTheOneTooMany) {
    auto server = start("01_blocking", stages::server_command("01_blocking_threads"),
                        {"--max-clients", "2", "--echo"});
    if (!server) return;
    auto a = std::make_unique<Peer>(server->host, server->port);
    Peer b(server->host, server->port);
    a->send_frame("a");
    ASSERT_EQ(a->recv_frame(), "a");
    b.send_frame("b");
    ASSERT_EQ(b.recv_frame(), "b");
    {
        Peer c(server->host, server->port);
        c.send_frame("c");
        EXPECT_FALSE(c.recv_frame_or_close().has_value()) << "a third client was served";
    }
    EXPECT_TRUE(server->process.wait_for_stderr("refused"))
        << "say in the log that a client was refused; the log:\n"
        << server->process.stderr_text();
    a->send_frame("still a");
    EXPECT_EQ(a->recv_frame(), "still a") << "refusing one client disturbed the others";

    // A client that leaves frees its slot. (Wait for the server to have seen
    // it go -- its log line -- or the next one could still find it full.)
    a = nullptr;  // a leaves: its socket closes
    ASSERT_TRUE(server->process.wait_for_stderr("client 1 disconnected"));
    Peer d(server->host, server->port);
    d.send_frame("d");
    EXPECT_EQ(d.recv_frame_or_close(), "d") << "a client left, but its slot stayed taken";
    b.send_frame("still b");
    EXPECT_EQ(b.recv_frame(), "still b");
}

// 02, exercise 1: replace select() with poll(), and the FD_SETSIZE limit goes.
TEST(Exercise02Poll, ServesPastFdSetsize) {
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_max < 1200) GTEST_SKIP() << "hard descriptor limit below 1200";
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    Server server(stages::server_command("02_select"), {"--echo"});
    std::vector<std::unique_ptr<Peer>> peers;
    for (int i = 0; i < 1100; ++i) {
        auto& peer = *peers.emplace_back(std::make_unique<Peer>(server.host, server.port));
        peer.send_frame("hello");
        ASSERT_EQ(peer.recv_frame_or_close(), "hello") << "client " << i << " was refused";
    }
}

// 02, exercise 2: --offload runs --work on a worker thread, and the result
// comes back to select() through a pipe (the self-pipe trick again). While a
// frame's work runs, the loop goes on: here it accepts a newcomer. (The work
// takes 3 s; the newcomer must be seen in half that. A loop that does the
// work itself accepts nobody for 3 s.)
TEST(Exercise02Offload, KeepsTheLoopAwake) {
    using namespace std::chrono_literals;
    auto server = start("02_select", stages::server_command("02_select"),
                        {"--echo", "--work", "3000000", "--offload"});
    if (!server) return;
    Peer heavy(server->host, server->port);
    heavy.send_frame("first");
    heavy.send_frame("second");
    ASSERT_TRUE(server->process.wait_for_stderr("client 1 connected"));
    Peer newcomer(server->host, server->port);
    EXPECT_TRUE(server->process.wait_for_stderr("client 2 connected", 1500ms))
        << "the loop accepted nobody while a frame's work ran: is the work still on it?";
    EXPECT_EQ(heavy.recv_frame(20s), "first");
    EXPECT_EQ(heavy.recv_frame(20s), "second") << "a sender's frames must stay in order";
}

// 03 and 04, exercise 1: --idle-timeout SECONDS disconnects a silent client
// -- and only a silent one: each frame a client sends starts its clock again.
void idle_clients_are_disconnected(const std::string& stage) {
    using namespace std::chrono_literals;
    auto server = start(stage, stages::server_command(stage), {"--idle-timeout", "1", "--echo"});
    if (!server) return;
    Peer silent(server->host, server->port);
    Peer active(server->host, server->port);
    // A frame every 100 ms for 2.5 idle timeouts: a server that cuts every
    // client after a second, talking or not, fails here. (The pauses are this
    // client's pace, far below the timeout; nothing waits for the server.)
    const auto start_time = std::chrono::steady_clock::now();
    for (int i = 0; std::chrono::steady_clock::now() - start_time < 2500ms; ++i) {
        const std::string ping = "ping " + std::to_string(i);
        active.send_frame(ping);
        const auto echo = active.recv_frame_or_close();
        ASSERT_TRUE(echo.has_value())
            << "a client that sends a frame every 100 ms was disconnected after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start_time)
                   .count()
            << " ms; the log:\n"
            << server->process.stderr_text();
        EXPECT_EQ(*echo, ping);
        EXPECT_TRUE(active.quiet_for(100ms))
            << "the server sent something unasked, or closed an active client";
    }
    EXPECT_TRUE(silent.closed_by_server()) << "a silent client was never disconnected";
    EXPECT_TRUE(server->process.wait_for_stderr("idle")) << "say why in the log";
}

TEST(Exercise03IdleTimeout, IdleClientsAreDisconnected) {
    idle_clients_are_disconnected("03_libuv_callbacks");
}
TEST(Exercise04IdleTimeout, IdleClientsAreDisconnected) {
    idle_clients_are_disconnected("04_coroutines");
}

// 04, exercise 3: co_await coro::resolve(host, port), an awaitable on uv_getaddrinfo.
TEST(Exercise04Resolve, AwaiterFindsTheAddresses) {
    auto main = []() -> coro::Coroutine<std::vector<std::string>> {
        const std::vector<std::string> hosts = {"127.0.0.1", "::1", "localhost"};
        std::vector<std::string> found;
        for (const std::string& host : hosts) {
            const sockaddr_storage addr = co_await coro::resolve(host, 1234);
            found.push_back(net::format_address(reinterpret_cast<const sockaddr*>(&addr)));
        }
        co_return found;
    };
    std::vector<std::string> found;
    try {
        found = coro::run(main());
    } catch (const std::exception& e) {
        FAIL() << e.what();
    }
    ASSERT_EQ(found.size(), 3u);
    EXPECT_EQ(found[0], "127.0.0.1:1234");
    EXPECT_EQ(found[1], "[::1]:1234");
    EXPECT_TRUE(found[2] == "127.0.0.1:1234" || found[2] == "[::1]:1234") << found[2];
}

// ...that keeps the runtime's rule: its callback puts the task on the ready
// queue, never resumes it (a task resumed from a callback is stopped at its
// next wait), and the loop serves others during the lookup.
TEST(Exercise04Resolve, TheLoopGoesOnAndTheTaskComesBackThroughTheReadyQueue) {
    auto main = []() -> coro::Coroutine<std::string> {
        int ticks = 0;
        auto ticker = coro::create_task([&ticks]() -> coro::Coroutine<void> {
            while (true) {
                ++ticks;
                co_await coro::sleep(0ms);
            }
        });
        co_await coro::resolve("localhost", 1234);
        co_await coro::sleep(0ms);  // a wait: logic_error if a callback resumed us
        ticker.cancel();
        co_return ticks > 0 ? "ok" : "the loop ran nothing else meanwhile";
    };
    try {
        EXPECT_EQ(coro::run(main()), "ok");
    } catch (const std::exception& e) {
        FAIL() << e.what();
    }
}

// ...and a name that does not resolve is a ConnectionError, as in open_connection.
TEST(Exercise04Resolve, AwaiterFailsWithAConnectionError) {
    auto main = []() -> coro::Coroutine<std::string> {
        try {
            co_await coro::resolve("", 0);  // neither a host nor a port: EAI_NONAME
        } catch (const coro::ConnectionError&) {
            co_return "ConnectionError";
        } catch (const std::exception& e) {
            co_return e.what();
        }
        co_return "no error";
    };
    EXPECT_EQ(coro::run(main()), "ConnectionError");
}

}  // namespace
