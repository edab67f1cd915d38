// Test plumbing for the conformance suites: start a real server or client
// process, read its output with deadlines, and talk to servers as a plain
// blocking peer. Nothing here sleeps to wait for a server: we read its
// "listening on HOST:PORT" line, and every wait has a deadline so a broken
// server fails a test instead of hanging it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frame.hpp"
#include "net.hpp"

namespace harness {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// How long one step (a frame, a line, an exit) may take. Generous for our
// servers: sanitizer builds on a busy 2-core machine are slow. Passing tests
// never wait this long; only a broken server does -- so for a server you
// bring, conformance --server sets it shorter, and a broken one fails fast.
inline Millis deadline = 20s;

// A process's end in words: "exit 0", "exit 2", "killed by SIGTERM (status
// 143): it has no handler for SIGTERM", "still running".
std::string describe_exit(std::optional<int> status);
// "SIGPIPE", "SIGSEGV"... (strsignal's words differ from one libc to another).
std::string signal_name(int signal);

// True where /proc describes processes (Linux). Tests that read it skip
// elsewhere, saying so.
bool has_proc();

// Splits "python3 my_server.py --flag" on spaces (no quoting).
std::vector<std::string> split_command(std::string_view command);

// A child process with stdin and stdout as pipes; stderr goes to a temporary
// file so it can be shown when a test fails. Killed (SIGKILL) on destruction if
// still running.
class Process {
  public:
    explicit Process(const std::vector<std::string>& argv);
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }

    // One line of stdout without its newline; nullopt at EOF or on timeout.
    std::optional<std::string> read_line(Millis timeout = deadline);
    // Everything until stdout closes (the process exits).
    std::string read_rest(Millis timeout = deadline);

    void write_stdin(std::string_view text);
    void close_stdin();
    void signal(int sig);

    // Exit code (or 128 + signal number); nullopt if still running at timeout.
    std::optional<int> wait(Millis timeout = deadline);
    std::string stderr_text() const;
    // What /proc says about the process: open descriptors and threads (Linux
    // only: see has_proc()).
    int open_descriptors() const;
    int threads() const;
    // Resident memory now and at its peak (VmRSS, VmHWM), in KiB.
    long rss_kib() const;
    long peak_rss_kib() const;
    // Waits until stderr contains `text` (polling its file); false on timeout.
    bool wait_for_stderr(std::string_view text, Millis timeout = deadline) const;

  private:
    pid_t pid_ = -1;
    net::Fd stdin_;
    net::Fd stdout_;
    std::string stdout_buffer_;
    std::string stderr_path_;
    std::optional<int> status_;
};

// A server started with --port 0, ready to accept.
struct Server {
    Server(const std::vector<std::string>& command, const std::vector<std::string>& extra_args);
    std::string command_line;  // as started, for failure messages
    Process process;
    std::string host;  // as printed, without brackets: "127.0.0.1" or "::1"
    std::uint16_t port = 0;
    std::string ready_line;
};

// A plain blocking test peer speaking the frame protocol.
class Peer {
  public:
    // receive_buffer > 0: a small SO_RCVBUF, so the server's queue (not the
    // kernel's) holds what this peer has not read yet.
    Peer(const std::string& host, std::uint16_t port, int receive_buffer = 0);

    void send_frame(std::string_view payload);
    void send_raw(std::string_view bytes);
    // The next frame; throws std::runtime_error on timeout, EOF or error.
    std::string recv_frame(Millis timeout = deadline);
    // The next frame, or nullopt if the server closed the connection (EOF or
    // reset) first; throws on timeout.
    std::optional<std::string> recv_frame_or_close(Millis timeout = deadline);
    // True when the server closes this connection (EOF or reset) before any
    // more data arrives; throws on timeout.
    bool closed_by_server(Millis timeout = deadline);
    // True when nothing at all arrives during `window`. Only ever used to
    // assert that something does NOT happen, so a slow machine cannot make a
    // correct server fail it.
    bool quiet_for(Millis window);

    void shutdown_write();
    // Closes with SO_LINGER 0: the kernel sends RST instead of FIN.
    void reset();
    int fd() const { return fd_.get(); }

  private:
    // Waits for readability; false on timeout.
    bool wait_readable(Millis timeout);
    net::Fd fd_;
    frame::Decoder decoder_{64 * 1024 * 1024};
    std::deque<std::string> held_;  // frames seen by quiet_for, not yet returned
};

}  // namespace harness
