#include "harness.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

extern char** environ;

namespace harness {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point until) {
    auto left = std::chrono::duration_cast<Millis>(until - Clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

bool poll_one(int fd, short events, Millis timeout) {
    const auto until = Clock::now() + timeout;
    while (true) {
        pollfd p{fd, events, 0};
        int rc = ::poll(&p, 1, remaining_ms(until));
        if (rc > 0) return true;
        if (rc == 0) return false;
        if (errno != EINTR) throw std::runtime_error(fmt::format("poll: {}", std::strerror(errno)));
    }
}

}  // namespace

std::vector<std::string> split_command(std::string_view command) {
    std::vector<std::string> words;
    std::istringstream in{std::string(command)};
    for (std::string word; in >> word;)
        words.push_back(word);
    return words;
}

Process::Process(const std::vector<std::string>& argv) {
    if (argv.empty()) throw std::invalid_argument("empty command");
    int in_pipe[2], out_pipe[2];
    if (::pipe2(in_pipe, O_CLOEXEC) < 0 || ::pipe2(out_pipe, O_CLOEXEC) < 0) {
        throw std::runtime_error("pipe failed");
    }
    char path[] = "/tmp/conformance-stderr-XXXXXX";
    int err_fd = ::mkstemp(path);
    if (err_fd < 0) throw std::runtime_error("mkstemp failed");
    stderr_path_ = path;

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    // The child gets default signal handling and an empty mask, whatever ours is.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = ::posix_spawnp(&pid_, args[0], &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    ::close(err_fd);
    stdin_.reset(in_pipe[1]);
    stdout_.reset(out_pipe[0]);
    if (rc != 0) {
        throw std::runtime_error(fmt::format("cannot start {}: {}", argv[0], std::strerror(rc)));
    }
}

Process::~Process() {
    if (!status_) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    ::unlink(stderr_path_.c_str());
}

std::optional<std::string> Process::read_line(Millis timeout) {
    const auto until = Clock::now() + timeout;
    while (true) {
        if (auto nl = stdout_buffer_.find('\n'); nl != std::string::npos) {
            std::string line = stdout_buffer_.substr(0, nl);
            stdout_buffer_.erase(0, nl + 1);
            return line;
        }
        if (!poll_one(stdout_.get(), POLLIN, Millis(remaining_ms(until)))) return std::nullopt;
        char buf[4096];
        ssize_t n = ::read(stdout_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        stdout_buffer_.append(buf, static_cast<std::size_t>(n));
    }
}

std::string Process::read_rest(Millis timeout) {
    const auto until = Clock::now() + timeout;
    while (poll_one(stdout_.get(), POLLIN, Millis(remaining_ms(until)))) {
        char buf[4096];
        ssize_t n = ::read(stdout_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        stdout_buffer_.append(buf, static_cast<std::size_t>(n));
    }
    return std::exchange(stdout_buffer_, {});
}

void Process::write_stdin(std::string_view text) {
    // Ignore SIGPIPE for the whole test program: a child that exits early must
    // fail the test, not kill it.
    std::signal(SIGPIPE, SIG_IGN);
    while (!text.empty()) {
        ssize_t n = ::write(stdin_.get(), text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            throw std::runtime_error(fmt::format("write to child: {}", std::strerror(errno)));
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

void Process::close_stdin() {
    stdin_.reset();
}

void Process::signal(int sig) {
    ::kill(pid_, sig);
}

std::optional<int> Process::wait(Millis timeout) {
    if (status_) return status_;
    const auto until = Clock::now() + timeout;
    while (true) {
        int status = 0;
        pid_t rc = ::waitpid(pid_, &status, WNOHANG);
        if (rc == pid_) {
            status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return status_;
        }
        if (Clock::now() >= until) return std::nullopt;
        // Polling a child's exit: there is no output to wait on here.
        std::this_thread::sleep_for(5ms);
    }
}

std::string Process::stderr_text() const {
    std::ifstream in(stderr_path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

int Process::open_descriptors() const {
    int count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid_))) {
        ++count;
    }
    return count;
}

namespace {
long status_field(pid_t pid, std::string_view field) {
    std::ifstream status(fmt::format("/proc/{}/status", pid));
    for (std::string line; std::getline(status, line);) {
        if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
    }
    return -1;
}
}  // namespace

int Process::threads() const {
    return static_cast<int>(status_field(pid_, "Threads:"));
}

long Process::rss_kib() const {
    return status_field(pid_, "VmRSS:");
}

long Process::peak_rss_kib() const {
    return status_field(pid_, "VmHWM:");
}

bool Process::wait_for_stderr(std::string_view text, Millis timeout) const {
    const auto until = Clock::now() + timeout;
    while (stderr_text().find(text) == std::string::npos) {
        if (Clock::now() >= until) return false;
        std::this_thread::sleep_for(10ms);  // a file cannot be waited on
    }
    return true;
}

namespace {
std::vector<std::string> server_argv(const std::vector<std::string>& command,
                                     const std::vector<std::string>& extra) {
    std::vector<std::string> argv = command;
    argv.insert(argv.end(), {"--port", "0"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}
}  // namespace

bool has_proc() {
    return std::filesystem::exists("/proc/self/status");
}

std::string describe_exit(std::optional<int> status) {
    if (!status) return "still running";
    if (*status <= 128) return fmt::format("exit {}", *status);
    const int signal = *status - 128;
    const char* why = signal == SIGTERM   ? ": it has no handler for SIGTERM"
                      : signal == SIGINT  ? ": it has no handler for SIGINT"
                      : signal == SIGSEGV ? " (a crash)"
                      : signal == SIGBUS  ? " (a crash)"
                      : signal == SIGABRT ? " (abort, e.g. an uncaught exception)"
                      : signal == SIGPIPE ? " (it wrote to a peer that had gone: ignore SIGPIPE)"
                                          : "";
    return fmt::format("killed by {} (signal {}, status {}){}", signal_name(signal), signal,
                       *status, why);
}

std::string signal_name(int signal) {
    switch (signal) {
        case SIGHUP:
            return "SIGHUP";
        case SIGINT:
            return "SIGINT";
        case SIGQUIT:
            return "SIGQUIT";
        case SIGILL:
            return "SIGILL";
        case SIGABRT:
            return "SIGABRT";
        case SIGBUS:
            return "SIGBUS";
        case SIGFPE:
            return "SIGFPE";
        case SIGKILL:
            return "SIGKILL";
        case SIGSEGV:
            return "SIGSEGV";
        case SIGPIPE:
            return "SIGPIPE";
        case SIGALRM:
            return "SIGALRM";
        case SIGTERM:
            return "SIGTERM";
        default:
            return fmt::format("signal {}", signal);
    }
}

Server::Server(const std::vector<std::string>& command, const std::vector<std::string>& extra)
    : command_line(fmt::format("{}", fmt::join(server_argv(command, extra), " "))),
      process(server_argv(command, extra)) {
    auto line = process.read_line();
    if (!line) {
        throw std::runtime_error(fmt::format(
            "the server printed no 'listening on' line within {} s ({}).\ncommand: {}\nits "
            "stderr:\n{}",
            std::chrono::duration_cast<std::chrono::seconds>(deadline).count(),
            describe_exit(process.wait(0ms)), command_line, process.stderr_text()));
    }
    ready_line = *line;
    static const std::regex ready(R"(^listening on (\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]+)$)");
    std::smatch m;
    if (!std::regex_match(ready_line, m, ready)) {
        throw std::runtime_error(fmt::format(
            "the first line on stdout must be exactly 'listening on HOST:PORT', not '{}'\n"
            "command: {}",
            ready_line, command_line));
    }
    host = m[2].matched ? m[2].str() : m[3].str();
    port = static_cast<std::uint16_t>(std::stoi(m[4].str()));
}

Peer::Peer(const std::string& host, std::uint16_t port, int receive_buffer)
    : fd_(net::connect_tcp(host, port, receive_buffer)) {
    net::ignore_sigpipe();  // a connection the server cut must fail a test, not kill the suite
}

void Peer::send_frame(std::string_view payload) {
    send_raw(frame::encode(payload));
}

void Peer::send_raw(std::string_view bytes) {
    if (!net::send_all(fd_.get(), bytes)) {
        throw std::runtime_error(fmt::format("send failed: {}", std::strerror(errno)));
    }
}

bool Peer::wait_readable(Millis timeout) {
    return poll_one(fd_.get(), POLLIN, timeout);
}

std::string Peer::recv_frame(Millis timeout) {
    const auto until = Clock::now() + timeout;
    if (!held_.empty()) {
        std::string payload = std::move(held_.front());
        held_.pop_front();
        return payload;
    }
    while (true) {
        if (auto payload = decoder_.next()) return *payload;
        if (!wait_readable(Millis(remaining_ms(until)))) {
            throw std::runtime_error("timed out waiting for a frame");
        }
        char buf[64 * 1024];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error(fmt::format("recv: {}", std::strerror(errno)));
        if (n == 0) throw std::runtime_error("connection closed while waiting for a frame");
        decoder_.feed({buf, static_cast<std::size_t>(n)});
    }
}

std::optional<std::string> Peer::recv_frame_or_close(Millis timeout) {
    try {
        return recv_frame(timeout);
    } catch (const std::runtime_error& e) {
        if (std::string_view(e.what()).starts_with("timed out")) throw;
        return std::nullopt;
    }
}

bool Peer::closed_by_server(Millis timeout) {
    if (!wait_readable(timeout))
        throw std::runtime_error("timed out waiting for the server to close");
    char buf[1];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

bool Peer::quiet_for(Millis window) {
    if (auto payload = decoder_.next()) {
        held_.push_back(std::move(*payload));
        return false;
    }
    if (!held_.empty()) return false;
    return !wait_readable(window);
}

void Peer::shutdown_write() {
    ::shutdown(fd_.get(), SHUT_WR);
}

void Peer::reset() {
    linger hard{1, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    fd_.reset();
}

}  // namespace harness
