// Tests for the exercises in the stage READMEs. They fail until you solve the
// exercise -- that is the point -- so they are not part of the normal run:
//
//   ctest --test-dir build -L exercises            # all of them
//   build/tests/exercises --gtest_filter='Exercise02*'
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"
#include "stages.hpp"

using namespace harness;

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
TEST(Exercise01, MaxClientsRefusesTheOneTooMany) {
    auto server = start("01_blocking", stages::server_command("01_blocking_threads"),
                        {"--max-clients", "2", "--echo"});
    if (!server) return;
    Peer a(server->host, server->port), b(server->host, server->port);
    a.send_frame("a");
    ASSERT_EQ(a.recv_frame(), "a");
    b.send_frame("b");
    ASSERT_EQ(b.recv_frame(), "b");
    Peer c(server->host, server->port);
    c.send_frame("c");
    EXPECT_FALSE(c.recv_frame_or_close().has_value()) << "a third client was served";
    a.send_frame("still a");
    EXPECT_EQ(a.recv_frame(), "still a");
}

// 02, exercise 1: replace select() with poll(), and the FD_SETSIZE limit goes.
TEST(Exercise02, PollServesPastFdSetsize) {
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

// 03 and 04, exercise 1: --idle-timeout SECONDS disconnects a silent client.
void idle_clients_are_disconnected(const std::string& stage) {
    auto server = start(stage, stages::server_command(stage), {"--idle-timeout", "1"});
    if (!server) return;
    Peer silent(server->host, server->port);
    EXPECT_TRUE(silent.closed_by_server()) << "a silent client was never disconnected";
    EXPECT_NE(server->process.stderr_text().find("idle"), std::string::npos)
        << "say why in the log";
}

TEST(Exercise03, IdleClientsAreDisconnected) {
    idle_clients_are_disconnected("03_libuv_callbacks");
}
TEST(Exercise04, IdleClientsAreDisconnected) {
    idle_clients_are_disconnected("04_coroutines");
}

}  // namespace
