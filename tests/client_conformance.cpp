// Client conformance: every stage's client, driven through stdin and stdout
// against a reference server, with plain test peers on the other side.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "harness.hpp"
#include "stages.hpp"

using namespace harness;
using stages::ClientSpec;

namespace {

class ClientConformance : public ::testing::TestWithParam<ClientSpec> {
  protected:
    void SetUp() override {
        server_ = std::make_unique<Server>(stages::reference_server(), std::vector<std::string>{});
        // Two peers that the server has certainly registered (q's frame reached p).
        p_ = std::make_unique<Peer>(server_->host, server_->port);
        q_ = std::make_unique<Peer>(server_->host, server_->port);
        q_->send_frame("join");
        ASSERT_EQ(p_->recv_frame(), "join");
    }

    void TearDown() override {
        if (HasFailure() && client_) {
            std::cerr << "---- client stderr ----\n" << client_->stderr_text() << "----\n";
        }
    }

    std::vector<std::string> client_command(std::vector<std::string> extra = {}) {
        auto argv = GetParam().command;
        argv.insert(argv.end(), {"--host", server_->host, "--port", std::to_string(server_->port)});
        argv.insert(argv.end(), extra.begin(), extra.end());
        return argv;
    }

    // Starts the client with stdin as a pipe we hold, and waits until the
    // server has registered it: its first line must reach the peers.
    Process& start_client() {
        client_ = std::make_unique<Process>(client_command());
        client_->write_stdin("ready\n");
        EXPECT_EQ(p_->recv_frame(), "ready");
        EXPECT_EQ(q_->recv_frame(), "ready");
        return *client_;
    }

    std::unique_ptr<Server> server_;
    std::unique_ptr<Peer> p_, q_;
    std::unique_ptr<Process> client_;
};

TEST_P(ClientConformance, SendsEachLineAsOneFrame) {
    auto& client = start_client();
    client.write_stdin("hello\n\nworld with spaces\n");
    EXPECT_EQ(p_->recv_frame(), "hello");
    EXPECT_EQ(p_->recv_frame(), "");
    EXPECT_EQ(p_->recv_frame(), "world with spaces");
    client.close_stdin();
    EXPECT_EQ(client.wait(), 0);
}

TEST_P(ClientConformance, PrintsEachFrameAsOneLine) {
    auto& client = start_client();
    p_->send_frame("one");
    p_->send_frame("");
    p_->send_frame("three");  // one sender: order across senders is not defined
    EXPECT_EQ(client.read_line(), "one");
    EXPECT_EQ(client.read_line(), "");
    EXPECT_EQ(client.read_line(), "three");
    client.close_stdin();
    EXPECT_EQ(client.wait(), 0);
}

TEST_P(ClientConformance, SendsAWholeFileFromStdinThenExitsZero) {
    char path[] = "/tmp/client-input-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    {
        std::ofstream file(path);
        for (int i = 0; i < 2000; ++i)
            file << "line " << i << '\n';
    }
    // stdin is a regular file here, not a pipe: `client < lines.txt`.
    std::vector<std::string> argv = {"/bin/sh", "-c", std::string("exec \"$0\" \"$@\" < ") + path};
    for (auto& a : client_command())
        argv.push_back(a);
    client_ = std::make_unique<Process>(argv);
    for (int i = 0; i < 2000; ++i)
        ASSERT_EQ(p_->recv_frame(), "line " + std::to_string(i));
    EXPECT_EQ(client_->wait(), 0);
    ::unlink(path);
}

TEST_P(ClientConformance, ExitsZeroOnEmptyInput) {
    std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" < /dev/null"};
    for (auto& a : client_command())
        argv.push_back(a);
    client_ = std::make_unique<Process>(argv);
    EXPECT_EQ(client_->wait(), 0);
}

TEST_P(ClientConformance, ExitsNonZeroWhenTheServerGoesAway) {
    auto& client = start_client();
    server_->process.signal(SIGTERM);
    EXPECT_EQ(server_->process.wait(), 0);
    auto status = client.wait();
    ASSERT_TRUE(status.has_value()) << "client still running after the server left";
    EXPECT_NE(*status, 0);
    EXPECT_NE(client.stderr_text(), "") << "the client must say why it stopped";
}

TEST_P(ClientConformance, SaysWhyItCannotConnect) {
    // A port that nobody listens on: bind one, note it, close it.
    net::Fd probe = net::listen_tcp("127.0.0.1", 0);
    const std::string address = net::local_address(probe.get());
    const std::string port = address.substr(address.rfind(':') + 1);
    probe.reset();
    auto argv = GetParam().command;
    argv.insert(argv.end(), {"--port", port});
    Process client(argv);
    auto status = client.wait();
    ASSERT_TRUE(status.has_value());
    EXPECT_NE(*status, 0);
    EXPECT_NE(client.stderr_text().find("connect"), std::string::npos) << client.stderr_text();
}

TEST_P(ClientConformance, WorksOverIpv6) {
    try {
        net::listen_tcp("::1", 0);
    } catch (const std::exception& e) {
        GTEST_SKIP() << "no IPv6 loopback on this machine: " << e.what();
    }
    auto reference = stages::reference_server();
    Server server(reference, {"--host", "::1", "--echo"});
    auto argv = GetParam().command;
    argv.insert(argv.end(), {"--host", "::1", "--port", std::to_string(server.port)});
    Process client(argv);
    client.write_stdin("over ipv6\n");
    EXPECT_EQ(client.read_line(), "over ipv6");
    client.close_stdin();
    EXPECT_EQ(client.wait(), 0);
}

TEST_P(ClientConformance, RejectsBadArgumentsWithExitCode2) {
    auto argv = GetParam().command;
    argv.push_back("--no-such-option");
    Process client(argv);
    EXPECT_EQ(client.wait(), 2);
}

TEST_P(ClientConformance, PrintsHelp) {
    auto argv = GetParam().command;
    argv.push_back("--help");
    Process client(argv);
    EXPECT_NE(client.read_rest().find("--port"), std::string::npos);
    EXPECT_EQ(client.wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(Stages, ClientConformance, ::testing::ValuesIn(stages::built_clients()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
