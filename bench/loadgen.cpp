// The benchmark's load generator: one process, one thread, epoll.
//
// Our framing is our own, so no off-the-shelf tool speaks it. Three workloads,
// each printing one JSON object on stdout:
//
//   --mode echo      N connections, closed loop: send a frame, wait for its
//                    echo, send the next. Messages/s, MB/s, latency percentiles.
//   --mode fanout    one sender and R receivers on a relay server: one frame
//                    in flight, done when the last receiver has it.
//   --mode capacity  idle connections added in steps; after each step a round
//                    trip on a probe connection, and the server's RSS and
//                    thread count from /proc/PID/status.
//   --mode hold      (the epilogue's c100k) --connections idle connections from
//                    the local address --source, held open; then, for each
//                    line "sample" on stdin, a round trip on every 1000th of
//                    them (a spread sample: they land on different servers);
//                    stdin's end closes them all. One JSON line per step.
//   --mode slowreader  a sender and a reader exchange --megabytes MiB in
//                    frames of --size bytes, in windows of about 1 MiB, on a relay
//                    server, with (--stalled 1) or without a third client that
//                    never reads: the reader's MB/s, its longest wait for a
//                    frame (a server that slows senders down holds everyone
//                    back until it cuts the stalled client), its MB/s after
//                    that wait, and the server's peak RSS.
//
// Echo mode counts bytes rather than parsing frames, so it also drives the
// raw (unframed) echo server that marks the machine's floor.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "frame.hpp"
#include "net.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::string mode = "echo";
    int connections = 10;
    std::size_t size = 64;
    double warmup = 0.5, duration = 1.5;
    int receivers = 10;
    int pid = 0;
    int step = 1000, max_connections = 19000;
    int stalled = 0;
    int megabytes = 100;
    std::string source;  // hold: the local address to connect from
};

[[noreturn]] void fail(const std::string& why) {
    fmt::print("{{\"ok\": false, \"error\": \"{}\"}}\n", why);
    std::exit(0);  // a failed workload is a result, not a crash of the benchmark
}

void raise_descriptor_limit() {
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
}

net::Fd connect_nonblocking(const Options& o) {
    net::Fd fd;
    try {
        fd = net::connect_tcp(o.host, o.port);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
    return fd;
}

double percentile(std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    std::size_t i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
    return v[i];
}

// A process's CPU time so far (user + system), from /proc/PID/stat.
double cpu_seconds(int pid) {
    std::ifstream stat(fmt::format("/proc/{}/stat", pid));
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto fields = text.rfind(')');  // the name may hold spaces: count after it
    if (fields == std::string::npos) return 0;
    std::istringstream rest(text.substr(fields + 2));
    std::string skip;
    for (int i = 3; i < 14; ++i)
        rest >> skip;  // state .. cmajflt
    long utime = 0, stime = 0;
    rest >> utime >> stime;
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---------------------------------------------------------------------------

struct EchoConn {
    net::Fd fd;
    std::size_t to_send = 0;  // bytes of the current message not yet written
    std::size_t to_recv = 0;  // bytes of its echo not yet read
    Clock::time_point sent_at;
    long replies = 0;
};

void run_echo(const Options& o) {
    const std::string message = frame::encode(std::string(o.size, 'e'));
    std::vector<EchoConn> conns(static_cast<std::size_t>(o.connections));
    net::Fd ep{::epoll_create1(EPOLL_CLOEXEC)};
    for (std::size_t i = 0; i < conns.size(); ++i) {
        conns[i].fd = connect_nonblocking(o);
        epoll_event ev{.events = EPOLLIN | EPOLLOUT, .data = {.u64 = i}};
        ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, conns[i].fd.get(), &ev);
    }
    auto start_message = [&](EchoConn& c) {
        c.to_send = message.size();
        c.to_recv = message.size();
        c.sent_at = Clock::now();
    };
    for (auto& c : conns)
        start_message(c);

    const auto begin = Clock::now();
    const double end_at = o.warmup + o.duration;
    std::vector<double> latencies;
    long measured = 0;
    std::vector<epoll_event> events(1024);
    char buffer[64 * 1024];
    while (seconds_since(begin) < end_at) {
        int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), 100);
        for (int k = 0; k < n; ++k) {
            EchoConn& c = conns[events[static_cast<std::size_t>(k)].data.u64];
            if (c.to_send > 0) {
                ssize_t w = ::send(c.fd.get(), message.data() + message.size() - c.to_send,
                                   c.to_send, MSG_NOSIGNAL);
                if (w > 0) c.to_send -= static_cast<std::size_t>(w);
                if (w < 0 && errno != EAGAIN) fail(fmt::format("send: {}", std::strerror(errno)));
            }
            while (true) {
                ssize_t r = ::recv(c.fd.get(), buffer, sizeof buffer, 0);
                if (r == 0) fail("server closed a connection");
                if (r < 0) {
                    if (errno == EAGAIN) break;
                    fail(fmt::format("recv: {}", std::strerror(errno)));
                }
                std::size_t got = static_cast<std::size_t>(r);
                while (got > 0) {
                    const std::size_t take = std::min(got, c.to_recv);
                    c.to_recv -= take;
                    got -= take;
                    if (c.to_recv == 0) {  // a whole echo is back
                        ++c.replies;
                        if (seconds_since(begin) >= o.warmup) {
                            ++measured;
                            latencies.push_back(seconds_since(c.sent_at) * 1e6);
                        }
                        start_message(c);
                        if (got > 0) fail("more bytes than were sent came back");
                    }
                }
            }
            // Writable interest only while there is something to send.
            epoll_event ev{.events = EPOLLIN | (c.to_send ? EPOLLOUT : 0u),
                           .data = events[static_cast<std::size_t>(k)].data};
            ::epoll_ctl(ep.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
        }
    }
    const long starved =
        std::count_if(conns.begin(), conns.end(), [](const EchoConn& c) { return c.replies == 0; });
    if (starved > 0) fail(fmt::format("{} of {} connections got no reply", starved, conns.size()));
    const double rate = static_cast<double>(measured) / o.duration;
    fmt::print(
        "{{\"ok\": true, \"msgs_per_s\": {:.1f}, \"mb_per_s\": {:.3f}, \"p50_us\": {:.1f}, "
        "\"p99_us\": {:.1f}, \"p999_us\": {:.1f}}}\n",
        rate, rate * static_cast<double>(message.size()) / 1e6, percentile(latencies, 50),
        percentile(latencies, 99), percentile(latencies, 99.9));
}

// ---------------------------------------------------------------------------

void run_fanout(const Options& o) {
    net::Fd ep{::epoll_create1(EPOLL_CLOEXEC)};
    net::Fd sender = connect_nonblocking(o);
    struct Receiver {
        net::Fd fd;
        frame::Decoder decoder{64 * 1024 * 1024};
        bool synced = false;
    };
    std::vector<Receiver> receivers(static_cast<std::size_t>(o.receivers));
    for (std::size_t i = 0; i < receivers.size(); ++i) {
        receivers[i].fd = connect_nonblocking(o);
        epoll_event ev{.events = EPOLLIN, .data = {.u64 = i}};
        ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, receivers[i].fd.get(), &ev);
    }
    auto send_seq = [&](std::uint64_t seq) {
        std::string payload(std::max<std::size_t>(o.size, 8), 'f');
        std::memcpy(payload.data(), &seq, 8);
        if (!net::send_all(sender.get(), frame::encode(payload))) fail("sender: send failed");
    };
    // Wait until the server relays to every receiver: sync frames (seq 0)
    // until all have one. (Connected is not yet registered.)
    std::vector<epoll_event> events(1024);
    char buffer[64 * 1024];
    int synced = 0;
    std::uint64_t seq = 0;
    long completed = 0;
    std::map<std::uint64_t, std::pair<int, Clock::time_point>>
        pending;  // seq -> (received, sent_at)
    std::vector<double> latencies;
    Clock::time_point begin{};
    bool measuring_started = false;
    const auto sync_start = Clock::now();
    auto last_sync = Clock::now() - std::chrono::seconds(1);
    while (true) {
        if (synced < o.receivers) {
            if (seconds_since(sync_start) > 30) fail("receivers never all registered");
            if (seconds_since(last_sync) > 0.02) {
                send_seq(0);
                last_sync = Clock::now();
            }
        } else if (!measuring_started) {
            measuring_started = true;
            begin = Clock::now();
            pending[++seq] = {0, Clock::now()};
            send_seq(seq);
        } else if (seconds_since(begin) >= o.warmup + o.duration) {
            break;
        }
        int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), 10);
        for (int k = 0; k < n; ++k) {
            Receiver& r = receivers[events[static_cast<std::size_t>(k)].data.u64];
            while (true) {
                ssize_t got = ::recv(r.fd.get(), buffer, sizeof buffer, 0);
                if (got == 0) fail("server closed a receiver");
                if (got < 0) {
                    if (errno == EAGAIN) break;
                    fail(fmt::format("recv: {}", std::strerror(errno)));
                }
                r.decoder.feed({buffer, static_cast<std::size_t>(got)});
                while (auto f = r.decoder.next()) {
                    std::uint64_t s = 0;
                    std::memcpy(&s, f->data(), 8);
                    if (s == 0) {
                        if (!r.synced) ++synced;
                        r.synced = true;
                        continue;
                    }
                    auto it = pending.find(s);
                    if (it == pending.end()) continue;
                    if (++it->second.first == o.receivers) {  // the last receiver has it
                        if (seconds_since(begin) >= o.warmup) {
                            ++completed;
                            latencies.push_back(seconds_since(it->second.second) * 1e6);
                        }
                        pending.erase(it);
                        pending[++seq] = {0, Clock::now()};
                        send_seq(seq);
                    }
                }
            }
        }
    }
    const double rate = static_cast<double>(completed) / o.duration;
    fmt::print(
        "{{\"ok\": true, \"msgs_per_s\": {:.1f}, \"deliveries_per_s\": {:.1f}, \"p50_us\": {:.1f}, "
        "\"p99_us\": {:.1f}}}\n",
        rate, rate * o.receivers, percentile(latencies, 50), percentile(latencies, 99));
}

// ---------------------------------------------------------------------------

std::pair<long, long> rss_kb_and_threads(int pid) {
    std::ifstream status(fmt::format("/proc/{}/status", pid));
    long rss = -1, threads = -1;
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) rss = std::stol(line.substr(6));
        if (line.rfind("Threads:", 0) == 0) threads = std::stol(line.substr(8));
    }
    return {rss, threads};
}

void run_capacity(const Options& o) {
    net::Fd probe = net::connect_tcp(o.host, o.port);
    std::vector<net::Fd> idle;
    std::vector<std::string> steps;
    const std::string ping = frame::encode("ping");
    auto round_trip = [&]() -> double {
        const auto t = Clock::now();
        timeval timeout{10, 0};
        ::setsockopt(probe.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        if (!net::send_all(probe.get(), ping)) return -1;
        char buf[64];
        std::size_t got = 0;
        while (got < ping.size()) {
            ssize_t r = ::recv(probe.get(), buf, sizeof buf, 0);
            if (r <= 0) return -1;
            got += static_cast<std::size_t>(r);
        }
        return seconds_since(t) * 1e3;
    };
    auto record = [&](std::size_t count, double rtt) {
        auto [rss, threads] = rss_kb_and_threads(o.pid);
        steps.push_back(fmt::format(
            "{{\"connections\": {}, \"rss_kb\": {}, \"threads\": {}, \"rtt_ms\": {:.3f}}}", count,
            rss, threads, rtt));
    };
    double rtt = round_trip();
    if (rtt < 0) fail("no echo on the probe connection");
    record(0, rtt);
    std::string error;
    while (static_cast<int>(idle.size()) < o.max_connections && error.empty()) {
        for (int i = 0; i < o.step && static_cast<int>(idle.size()) < o.max_connections; ++i) {
            try {
                idle.push_back(net::connect_tcp(o.host, o.port));
            } catch (const std::exception& e) {
                error = e.what();
                break;
            }
        }
        rtt = round_trip();
        if (rtt < 0) {
            error = fmt::format("no round trip with {} idle connections", idle.size());
            break;
        }
        // Did the server drop any of them (select past FD_SETSIZE, say)?
        std::size_t dropped = 0;
        for (auto& fd : idle) {
            char b;
            if (::recv(fd.get(), &b, 1, MSG_DONTWAIT) == 0) ++dropped;
        }
        if (dropped > 0) {
            error = fmt::format("server closed {} of {} idle connections", dropped, idle.size());
            break;
        }
        record(idle.size(), rtt);
    }
    fmt::print("{{\"ok\": {}, \"error\": \"{}\", \"steps\": [{}]}}\n",
               error.empty() ? "true" : "false", error, fmt::join(steps, ", "));
}

// ---------------------------------------------------------------------------

// One connection from `source` (a loopback address such as 127.0.0.2): each
// local address has its own ephemeral ports (about 28,000 on Linux) towards
// one server address and port, so several of them get past that limit.
net::Fd connect_from(const std::string& source, const Options& o) {
    const sockaddr_storage local = net::resolve(source, 0, true);
    const sockaddr_storage remote = net::resolve(o.host, o.port, false);
    net::Fd fd{::socket(remote.ss_family, SOCK_STREAM, 0)};
    if (!fd) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
    const socklen_t length =
        remote.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), length) < 0)
        throw std::runtime_error(fmt::format("bind {}: {}", source, std::strerror(errno)));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&remote), length) < 0)
        throw std::runtime_error(fmt::format("connect: {}", std::strerror(errno)));
    return fd;
}

void run_hold(const Options& o) {
    std::vector<net::Fd> held;
    held.reserve(static_cast<std::size_t>(o.connections));
    const auto start = Clock::now();
    try {
        while (static_cast<int>(held.size()) < o.connections)
            held.push_back(connect_from(o.source.empty() ? "127.0.0.1" : o.source, o));
    } catch (const std::exception& e) {
        fail(fmt::format("{} after {} connections", e.what(), held.size()));
    }
    fmt::print("{{\"ok\": true, \"connected\": {}, \"seconds\": {:.2f}}}\n", held.size(),
               seconds_since(start));
    std::fflush(stdout);
    const std::string ping = frame::encode("ping");
    for (std::string line; std::getline(std::cin, line);) {
        if (line != "sample") continue;
        int sampled = 0, answered = 0;
        double slowest = 0;
        for (std::size_t i = 0; i < held.size(); i += 1000) {
            ++sampled;
            const auto t = Clock::now();
            if (!net::send_all(held[i].get(), ping)) continue;
            std::size_t got = 0;
            char buf[64];
            while (got < ping.size()) {
                pollfd p{held[i].get(), POLLIN, 0};
                if (::poll(&p, 1, 10000) != 1) break;
                const ssize_t r = ::recv(held[i].get(), buf, sizeof buf, 0);
                if (r <= 0) break;
                got += static_cast<std::size_t>(r);
            }
            if (got == ping.size()) {
                ++answered;
                slowest = std::max(slowest, seconds_since(t) * 1e3);
            }
        }
        fmt::print("{{\"sampled\": {}, \"answered\": {}, \"slowest_ms\": {:.3f}}}\n", sampled,
                   answered, slowest);
        std::fflush(stdout);
    }
}

void run_slowreader(const Options& o) {
    // With --stalled 1, the first half of the frames go to the reader alone
    // (its speed "before"); then a third client joins and never reads, and
    // the second half measures the wait and the speed after it -- both speeds
    // from one server process, so they compare (two separate starts of one
    // server differ by tens of percent).
    net::Fd stalled;
    net::Fd sender = net::connect_tcp(o.host, o.port);
    net::Fd reader = net::connect_tcp(o.host, o.port);
    frame::Decoder decoder(64 * 1024 * 1024);
    char buffer[64 * 1024];
    // Next frame for the reader, skipping sync frames; nullopt on timeout.
    auto next_frame = [&](int timeout_ms) -> std::optional<std::string> {
        const auto until = Clock::now() + std::chrono::milliseconds(timeout_ms);
        while (true) {
            while (auto f = decoder.next()) {
                if (*f != "sync") return f;
            }
            pollfd p{reader.get(), POLLIN, 0};
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
                return std::nullopt;
            ssize_t r = ::recv(reader.get(), buffer, sizeof buffer, 0);
            if (r <= 0) return std::nullopt;
            decoder.feed({buffer, static_cast<std::size_t>(r)});
        }
    };
    // Sync: resend until one reaches the reader (connected is not yet
    // registered). Sync frames that arrive later are skipped.
    bool synced = false;
    for (int attempt = 0; attempt < 500 && !synced; ++attempt) {
        if (!net::send_all(sender.get(), frame::encode("sync"))) fail("sender: send failed");
        pollfd p{reader.get(), POLLIN, 0};
        if (::poll(&p, 1, 20) > 0) {
            ssize_t r = ::recv(reader.get(), buffer, sizeof buffer, 0);
            if (r <= 0) fail("reader closed during sync");
            decoder.feed({buffer, static_cast<std::size_t>(r)});
            synced = true;
        }
    }
    if (!synced) fail("reader never got a sync frame");

    // Frames of --size bytes, in windows of about 1 MiB on the wire: the
    // sender writes a window, the reader reads it, and so on.
    const std::string encoded = frame::encode(std::string(o.size, 's'));
    const int window = static_cast<int>(std::max<std::size_t>(1, (1 << 20) / encoded.size()));
    const int frames = static_cast<int>(static_cast<long long>(o.megabytes) * (1 << 20) /
                                        encoded.size() / window * window);
    std::string window_bytes;
    for (int i = 0; i < window; ++i)
        window_bytes += encoded;
    auto send_and_read = [&](int from, int to) {
        for (int first = from; first < to; first += window) {
            if (!net::send_all(sender.get(), window_bytes)) fail("sender: send failed");
            for (int i = 0; i < window; ++i) {
                if (!next_frame(20000))
                    fail(fmt::format("reader: no frame after {} frames", first));
            }
        }
    };
    const auto start = Clock::now();
    const double cpu_start = cpu_seconds(o.pid);
    int half = 0;
    double before = 0;         // MB/s over the first half, with no stalled client yet
    double cpu_before_us = 0;  // the server's CPU time per MB over it
    if (o.stalled) {
        half = frames / 2 / window * window;
        send_and_read(0, half);
        before = static_cast<double>(half) * encoded.size() / 1e6 / seconds_since(start);
        cpu_before_us = (cpu_seconds(o.pid) - cpu_start) * 1e6 /
                        (static_cast<double>(half) * encoded.size() / 1e6);
        // The stalled client joins, reads one sync frame (so we know the
        // server relays to it), and never reads again.
        stalled = net::connect_tcp(o.host, o.port);
        bool joined = false;
        for (int attempt = 0; attempt < 500 && !joined; ++attempt) {
            if (!net::send_all(sender.get(), frame::encode("sync"))) fail("sender: send failed");
            pollfd p{stalled.get(), POLLIN, 0};
            joined = ::poll(&p, 1, 20) > 0;
        }
        if (!joined) fail("the stalled client never got a sync frame");
    }
    const auto second_half = Clock::now();
    auto last = second_half, gap_end = second_half;
    Clock::duration longest_gap{};
    int frames_after_gap = frames - half;
    double cpu_at_gap = cpu_seconds(o.pid);
    for (int first = half; first < frames; first += window) {
        if (!net::send_all(sender.get(), window_bytes)) fail("sender: send failed");
        for (int i = 0; i < window; ++i) {
            if (!next_frame(20000)) fail(fmt::format("reader: no frame after {} frames", first));
            const auto now = Clock::now();
            if (now - last > longest_gap) {
                longest_gap = now - last;
                gap_end = now;
                frames_after_gap = frames - (first + i);
                cpu_at_gap = cpu_seconds(o.pid);  // (a new longest wait is rare: cheap)
            }
            last = now;
        }
    }
    const double elapsed = seconds_since(start);
    const double after = std::chrono::duration<double>(Clock::now() - gap_end).count();
    long peak_kb = -1;
    std::ifstream status(fmt::format("/proc/{}/status", o.pid));
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmHWM:", 0) == 0) peak_kb = std::stol(line.substr(6));
    }
    const auto mb = [&](int n) { return static_cast<double>(n) * encoded.size() / 1e6; };
    // The server's CPU time per MB relayed after the wait: unlike a speed, it
    // does not move when the machine's other work does.
    const double cpu_after_us = (cpu_seconds(o.pid) - cpu_at_gap) * 1e6 / mb(frames_after_gap);
    fmt::print(
        "{{\"ok\": true, \"mb_per_s\": {:.1f}, \"longest_wait_s\": {:.3f}, "
        "\"mb_per_s_after_wait\": {:.1f}, \"mb_per_s_before\": {:.1f}, "
        "\"cpu_us_per_mb_before\": {:.1f}, \"cpu_us_per_mb_after\": {:.1f}, \"peak_rss_kb\": "
        "{}}}\n",
        mb(frames) / elapsed, std::chrono::duration<double>(longest_gap).count(),
        after > 0 ? mb(frames_after_gap) / after : 0.0, before, cpu_before_us, cpu_after_us,
        peak_kb);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view key = argv[i];
        const std::string value = argv[i + 1];
        if (key == "--host") {
            o.host = value;
        } else if (key == "--port") {
            o.port = static_cast<std::uint16_t>(std::stoi(value));
        } else if (key == "--mode") {
            o.mode = value;
        } else if (key == "--connections") {
            o.connections = std::stoi(value);
        } else if (key == "--size") {
            o.size = std::stoul(value);
        } else if (key == "--warmup") {
            o.warmup = std::stod(value);
        } else if (key == "--duration") {
            o.duration = std::stod(value);
        } else if (key == "--receivers") {
            o.receivers = std::stoi(value);
        } else if (key == "--pid") {
            o.pid = std::stoi(value);
        } else if (key == "--step") {
            o.step = std::stoi(value);
        } else if (key == "--max") {
            o.max_connections = std::stoi(value);
        } else if (key == "--stalled") {
            o.stalled = std::stoi(value);
        } else if (key == "--source") {
            o.source = value;
        } else if (key == "--megabytes") {
            o.megabytes = std::stoi(value);
        } else {
            fmt::print(stderr, "loadgen: unknown option {}\n", key);
            return 2;
        }
    }
    raise_descriptor_limit();
    if (o.mode == "echo") {
        run_echo(o);
    } else if (o.mode == "fanout") {
        run_fanout(o);
    } else if (o.mode == "capacity") {
        run_capacity(o);
    } else if (o.mode == "hold") {
        run_hold(o);
    } else if (o.mode == "slowreader") {
        run_slowreader(o);
    } else {
        fmt::print(stderr, "loadgen: unknown mode {}\n", o.mode);
        return 2;
    }
    return 0;
}
