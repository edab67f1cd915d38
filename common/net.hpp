// Socket plumbing that does not depend on the concurrency model: resolving an
// address, opening a listening or connected socket, printing addresses, and a
// small RAII owner for file descriptors. Stages 01 and 02 use the descriptors
// directly; 03 and 04 hand the address to libuv.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace net {

// Owns one file descriptor and closes it exactly once. Move-only: two owners of
// one descriptor would close it twice, and the second close might hit a
// descriptor number the kernel has already handed to someone else.
class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }

    int get() const { return fd_; }
    // Hands the descriptor to someone else (a libuv handle, another thread),
    // who closes it from now on.
    int release() { return std::exchange(fd_, -1); }
    explicit operator bool() const { return fd_ >= 0; }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

// Resolves host:port (numeric or a name like "localhost") into a socket address.
// Throws std::runtime_error with a readable message on failure.
sockaddr_storage resolve(const std::string& host, std::uint16_t port, bool passive);

// socket() + bind() + listen(), with SO_REUSEADDR so a restarted server does not
// wait for old connections in TIME_WAIT. Throws std::runtime_error on failure.
// share_port: SO_REUSEPORT too, so several processes listen on one port (on
// Linux the kernel spreads the connections over them; macOS lets them bind
// but gives the connections to one).
Fd listen_tcp(const std::string& host, std::uint16_t port, int backlog = SOMAXCONN,
              bool share_port = false);

// A blocking connect(). Throws std::runtime_error saying why it failed.
// receive_buffer > 0 sets SO_RCVBUF first (it must precede connect to count).
Fd connect_tcp(const std::string& host, std::uint16_t port, int receive_buffer = 0);

// Small frames should leave now, not wait to be merged with later ones
// (Nagle's algorithm) -- which, with the peer's delayed ACKs, can hold an
// interactive message back for 40 ms.
void set_nodelay(int fd);

// "127.0.0.1:1234" or "[::1]:1234".
std::string format_address(const sockaddr* addr);
std::string local_address(int fd);
std::string peer_address(int fd);

// Prints the ready line every test and script waits for -- exactly
// "listening on HOST:PORT" as the first line of stdout -- and flushes it, since
// stdout is a pipe (fully buffered) when a test reads it.
void announce_listening(int listen_fd);
void announce_listening(const sockaddr* addr);
void announce_listening(std::string_view address);  // "127.0.0.1:1234", "[::1]:1234"

// Descriptor flags, with fcntl (POSIX).
void set_cloexec(int fd);
void set_nonblocking(int fd);

// accept() plus close-on-exec (and O_NONBLOCK if asked): what Linux's
// accept4() does in one call, in portable POSIX. An invalid Fd on failure,
// with errno set.
Fd accept_connection(int listen_fd, bool nonblocking);

// Stage 02's answer to running out of descriptors, for the servers that
// accept by themselves (the epilogue's): one descriptor kept in reserve. When
// accept() fails with EMFILE, the waiting connection stays queued and the
// listener stays readable -- a busy loop. refuse() frees the reserve, accepts
// that connection and closes it (its client sees it closed instead of
// hanging), then takes the reserve back. It returns the refused peer's
// address, or "" if no connection was waiting.
class SpareDescriptor {
  public:
    SpareDescriptor();  // opens /dev/null as the reserve
    std::string refuse(int listen_fd);

  private:
    Fd spare_;
};

// Ignore SIGPIPE for the whole process: a write to a peer that has gone then
// fails with EPIPE instead of killing us. Every program calls it at start-up
// (through cli::parse_server / parse_client).
void ignore_sigpipe();

// One send() of as much of `bytes` as the kernel takes (a peer that has gone
// gives EPIPE: see ignore_sigpipe). Returns what send() returns.
ssize_t send_some(int fd, std::string_view bytes, int flags = 0);

// Blocking write of every byte. send() may write fewer bytes than asked (the
// kernel's send buffer was nearly full, or a signal arrived), so we loop.
// A peer that has gone gives EPIPE (see ignore_sigpipe). Returns false on
// error (errno says which).
bool send_all(int fd, std::string_view bytes);

// The same, but it gives up (false, errno ETIMEDOUT) once the kernel has
// taken no byte for `stall_timeout`: a blocking write that can tell a slow
// reader (it takes bytes, slowly) from a stopped one (it takes none).
bool send_all(int fd, std::string_view bytes, std::chrono::milliseconds stall_timeout);

}  // namespace net
