#include "net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace net {

sockaddr_storage resolve(const std::string& host, std::uint16_t port, bool passive) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;  // IPv4 or IPv6, whichever the host names
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    addrinfo* result = nullptr;
    const std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result); rc != 0) {
        throw std::runtime_error(fmt::format("cannot resolve '{}': {}", host, gai_strerror(rc)));
    }
    sockaddr_storage addr{};
    std::memcpy(&addr, result->ai_addr, result->ai_addrlen);
    ::freeaddrinfo(result);
    return addr;
}

void set_cloexec(int fd) {
    ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

void set_nonblocking(int fd) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// socket() + close-on-exec, with fcntl rather than Linux's SOCK_CLOEXEC flag:
// POSIX, so it builds on macOS too.
static Fd tcp_socket(int family) {
    Fd fd{::socket(family, SOCK_STREAM, 0)};
    if (!fd) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
    set_cloexec(fd.get());
    return fd;
}

SpareDescriptor::SpareDescriptor() : spare_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {}

std::string SpareDescriptor::refuse(int listen_fd) {
    // Only if one waits: on a blocking listener accept() would wait for the next.
    pollfd waiting{.fd = listen_fd, .events = POLLIN, .revents = 0};
    if (::poll(&waiting, 1, 0) != 1) return "";
    spare_.reset();
    Fd refused{::accept(listen_fd, nullptr, nullptr)};
    std::string peer = refused ? peer_address(refused.get()) : "";
    refused.reset();
    spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return peer;
}

Fd accept_connection(int listen_fd, bool nonblocking) {
    Fd fd{::accept(listen_fd, nullptr, nullptr)};
    if (!fd) return fd;  // errno says why
    set_cloexec(fd.get());
    if (nonblocking) set_nonblocking(fd.get());
    return fd;
}

static socklen_t length_of(const sockaddr_storage& addr) {
    return addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

Fd listen_tcp(const std::string& host, std::uint16_t port, int backlog, bool share_port) {
    const sockaddr_storage addr = resolve(host, port, true);
    Fd fd = tcp_socket(addr.ss_family);
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (share_port) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), length_of(addr)) < 0) {
        throw std::runtime_error(fmt::format(
            "cannot listen on {}: {}", format_address(reinterpret_cast<const sockaddr*>(&addr)),
            std::strerror(errno)));
    }
    if (::listen(fd.get(), backlog) < 0) {
        throw std::runtime_error(fmt::format("listen: {}", std::strerror(errno)));
    }
    return fd;
}

Fd connect_tcp(const std::string& host, std::uint16_t port, int receive_buffer) {
    const sockaddr_storage addr = resolve(host, port, false);
    const std::string where = format_address(reinterpret_cast<const sockaddr*>(&addr));
    Fd fd = tcp_socket(addr.ss_family);
    if (receive_buffer > 0) {
        ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), length_of(addr)) < 0) {
        throw std::runtime_error(
            fmt::format("cannot connect to {}: {}", where, std::strerror(errno)));
    }
    set_nodelay(fd.get());
    return fd;
}

void set_nodelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string format_address(const sockaddr* addr) {
    char text[INET6_ADDRSTRLEN] = "?";
    if (addr->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
        return fmt::format("[{}]:{}", text, ntohs(in6->sin6_port));
    }
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(addr);
    ::inet_ntop(AF_INET, &in4->sin_addr, text, sizeof text);
    return fmt::format("{}:{}", text, ntohs(in4->sin_port));
}

std::string local_address(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return format_address(reinterpret_cast<const sockaddr*>(&addr));
}

std::string peer_address(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return "?";
    return format_address(reinterpret_cast<const sockaddr*>(&addr));
}

void announce_listening(std::string_view address) {
    fmt::print("listening on {}\n", address);
    std::fflush(stdout);
}

void announce_listening(const sockaddr* addr) {
    announce_listening(format_address(addr));
}

void announce_listening(int listen_fd) {
    announce_listening(local_address(listen_fd));
}

// Writing to a peer that has gone (it reset, or closed while we still had
// bytes for it) raises SIGPIPE, whose default action kills the whole process:
// one unlucky client would take every other one down with it. Linux's
// MSG_NOSIGNAL fixes this for one send() only, and libuv's uv_write uses
// plain write(), which has no such flag -- so every program ignores SIGPIPE
// once, at start-up (cli::parse_server and cli::parse_client call this), and
// a write to a dead peer fails with EPIPE like any other error. POSIX: the
// same on macOS, where MSG_NOSIGNAL does not exist.
void ignore_sigpipe() {
    ::signal(SIGPIPE, SIG_IGN);
}

ssize_t send_some(int fd, std::string_view bytes, int flags) {
    return ::send(fd, bytes.data(), bytes.size(), flags);
}

bool send_all(int fd, std::string_view bytes, std::chrono::milliseconds stall_timeout) {
    while (!bytes.empty()) {
        // Wait for room -- at most stall_timeout since the kernel last took a
        // byte: each byte it takes starts the clock again.
        pollfd wanted{.fd = fd, .events = POLLOUT, .revents = 0};
        const int ready = ::poll(&wanted, 1, static_cast<int>(stall_timeout.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return false;
        if (ready == 0) {
            errno = ETIMEDOUT;
            return false;
        }
        const ssize_t n = send_some(fd, bytes, MSG_DONTWAIT);  // what fits, never more
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

bool send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = send_some(fd, bytes);
        if (n < 0) {
            if (errno == EINTR) continue;  // interrupted before anything was sent
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));  // a short write: send the rest
    }
    return true;
}

}  // namespace net
