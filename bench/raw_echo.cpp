// The floor: the least a server can do for the echo workload. epoll, no
// framing, no buffering policy -- bytes in, the same bytes out. Every other
// server's numbers are read as a fraction of this one's.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

#include "cli.hpp"
#include "net.hpp"

int main(int argc, char** argv) {
    const auto options =
        cli::parse_server({.name = "bench/raw_echo",
                           .summary = "minimal epoll echo without framing (benchmark floor)"},
                          {argv, static_cast<std::size_t>(argc)});
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    net::Fd signals{::signalfd(-1, &mask, SFD_CLOEXEC)};
    net::Fd listener = net::listen_tcp(options.host, options.port);
    net::Fd ep{::epoll_create1(EPOLL_CLOEXEC)};
    epoll_event ev{.events = EPOLLIN, .data = {.fd = listener.get()}};
    ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, listener.get(), &ev);
    ev.data.fd = signals.get();
    ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, signals.get(), &ev);
    net::announce_listening(listener.get());

    std::vector<epoll_event> events(1024);
    char buffer[64 * 1024];
    while (true) {
        int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), -1);
        for (int i = 0; i < n; ++i) {
            const int fd = events[static_cast<std::size_t>(i)].data.fd;
            if (fd == signals.get()) return 0;
            if (fd == listener.get()) {
                int c = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (c < 0) continue;
                epoll_event cev{.events = EPOLLIN, .data = {.fd = c}};
                ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, c, &cev);
                continue;
            }
            ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
            // Blocking send: the closed-loop load never has more in flight
            // than the socket buffers hold.
            if (r <= 0 || !net::send_all(fd, {buffer, static_cast<std::size_t>(r)})) ::close(fd);
        }
    }
}
