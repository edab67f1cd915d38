// The demo's load tool (./workshop demo): small workloads against one server,
// each printing one line of key=value pairs that the demo script narrates.
// The script reads the server's threads and memory from /proc itself, while
// this tool holds the load.
//
//   demo_tool idle --port P --count N [--step S]
//       Opens N idle connections to an --echo server, S at a time. After each
//       step, a round trip on that step's last connection: the kernel hands
//       connections out in order, so once it is echoed the server has accepted
//       every earlier one. A connection the server has closed counts as
//       refused, and no more are opened. Prints
//           reached=K asked=N refused=R [error="..."]
//       then holds the connections until stdin closes (or --hold SECONDS).
//
//   demo_tool slow --port P [--megabytes M]
//       On a relay server: a stalled client connects and never reads, then a
//       sender sends M MiB in 64 KiB frames while a reader reads them. Prints
//       what the reader got (all of it, in order?), its longest wait for a
//       frame, the sender's longest blocked send (backpressure) and whether
//       the server cut the stalled client.
//
//   demo_tool latency --port P [--frames F] [--window W]
//       On an --echo server: a heavy client keeps W frames in flight all the
//       time, while a light client sends F small frames one at a time and
//       times each round trip. Prints p50 and p99 in milliseconds, the
//       heavy client's frames per second and the tool's own CPU time.
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "frame.hpp"
#include "net.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string mode;
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    int count = 1000, step = 1000;
    double hold = -1;  // seconds; < 0: until stdin closes
    int megabytes = 32;
    int frames = 200, window = 4;
};

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// The next frame on a blocking socket, or nullopt if it closed or nothing
// came for `timeout_ms`.
std::optional<std::string> read_frame(int fd, frame::Decoder& decoder, int timeout_ms = 20000) {
    char buffer[64 * 1024];
    while (true) {
        if (auto f = decoder.next()) return f;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        decoder.feed({buffer, static_cast<std::size_t>(n)});
    }
}

// A send() that waits longer than this fails (EAGAIN), so that a server that
// stops reading for good makes this tool fail rather than hang.
void limit_send_wait(int fd, int seconds = 20) {
    timeval timeout{seconds, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
}

// Has the server closed this connection? (Without waiting.)
bool closed_by_peer(int fd) {
    char byte;
    ssize_t n = ::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// ---------------------------------------------------------------------------

int run_idle(const Options& o) {
    std::vector<net::Fd> conns;
    conns.reserve(static_cast<std::size_t>(o.count));
    std::string error;
    int refused = 0;
    const std::string ping = frame::encode("ping");
    while (static_cast<int>(conns.size()) < o.count && refused == 0 && error.empty()) {
        const std::size_t first = conns.size();
        const int batch = std::min(o.step, o.count - static_cast<int>(first));
        for (int i = 0; i < batch; ++i) {
            try {
                conns.push_back(net::connect_tcp(o.host, o.port));
            } catch (const std::exception& e) {
                error = e.what();  // out of descriptors or ports on our side
                break;
            }
        }
        if (conns.size() == first) break;
        // The round trip on the step's last connection (or its closing).
        frame::Decoder decoder;
        const int probe = conns.back().get();
        if (net::send_all(probe, ping)) (void)read_frame(probe, decoder, 10000);
        for (std::size_t i = first; i < conns.size(); ++i) {
            if (closed_by_peer(conns[i].get())) ++refused;
        }
    }
    const int reached = static_cast<int>(conns.size()) - refused;
    fmt::print("reached={} asked={} refused={}", reached, o.count, refused);
    if (!error.empty()) fmt::print(" error=\"{}\"", error);
    fmt::print("\n");
    std::fflush(stdout);
    // Hold them while the script reads /proc.
    if (o.hold >= 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(o.hold));
    } else {
        char b[256];
        while (::read(0, b, sizeof b) > 0) {
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------

int run_slow(const Options& o) {
    // The stalled client connects first, so every server has registered it
    // before the reader.
    net::Fd stalled = net::connect_tcp(o.host, o.port);
    net::Fd sender = net::connect_tcp(o.host, o.port);
    net::Fd reader = net::connect_tcp(o.host, o.port);
    limit_send_wait(sender.get());
    frame::Decoder decoder(16 * 1024 * 1024);

    // Sync: resend until one reaches the reader (a server may not have
    // registered it yet). Later sync frames are skipped.
    bool synced = false;
    for (int attempt = 0; attempt < 500 && !synced; ++attempt) {
        if (!net::send_all(sender.get(), frame::encode("sync"))) break;
        synced = read_frame(reader.get(), decoder, 20).has_value();
    }
    if (!synced) {
        fmt::print("error=\"the reader never got a frame\"\n");
        return 1;
    }

    const std::size_t frame_size = 64 * 1024;
    const std::uint64_t total = static_cast<std::uint64_t>(o.megabytes) * 16;
    std::atomic<std::uint64_t> received{0};
    bool in_order = true;
    double longest_wait = 0;
    const auto start = Clock::now();
    std::thread reading([&] {
        auto last = Clock::now();
        while (received < total) {
            auto f = read_frame(reader.get(), decoder);
            if (!f) break;  // closed, or 20 s without a frame
            if (*f == "sync") continue;
            std::uint64_t seq = 0;
            if (f->size() == frame_size) std::memcpy(&seq, f->data(), sizeof seq);
            if (f->size() != frame_size || seq != received) in_order = false;
            ++received;
            longest_wait = std::max(longest_wait, ms_since(last));
            last = Clock::now();
        }
    });
    std::string payload(frame_size, 's');
    double longest_block = 0;
    for (std::uint64_t seq = 0; seq < total; ++seq) {
        std::memcpy(payload.data(), &seq, sizeof seq);
        const auto t = Clock::now();
        if (!net::send_all(sender.get(), frame::encode(payload))) break;
        longest_block = std::max(longest_block, ms_since(t));
    }
    reading.join();
    const double elapsed = ms_since(start);

    // What became of the stalled client: it now reads what it was sent, up
    // to the end of the stream if the server cut it (still open if nothing
    // comes for half a second).
    std::string stalled_state = "open";
    char buffer[64 * 1024];
    while (true) {
        pollfd p{stalled.get(), POLLIN, 0};
        if (::poll(&p, 1, 500) <= 0) break;
        ssize_t n = ::recv(stalled.get(), buffer, sizeof buffer, 0);
        if (n > 0 || (n < 0 && errno == EINTR)) continue;
        stalled_state = "cut";  // end of stream, or reset
        break;
    }
    fmt::print(
        "sent_mib={} received_mib={:.1f} in_order={} longest_wait_ms={:.0f} "
        "sender_blocked_ms={:.0f} stalled={} elapsed_ms={:.0f}\n",
        o.megabytes, static_cast<double>(received.load()) / 16.0,
        in_order && received == total ? "yes" : "no", longest_wait, longest_block, stalled_state,
        elapsed);
    return 0;
}

// ---------------------------------------------------------------------------

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5)];
}

int run_latency(const Options& o) {
    net::Fd heavy = net::connect_tcp(o.host, o.port);
    net::Fd light = net::connect_tcp(o.host, o.port);
    limit_send_wait(heavy.get());
    limit_send_wait(light.get());
    const std::string message = frame::encode(std::string(64, 'x'));
    std::atomic<bool> stop{false}, busy{false}, heavy_done{false};
    long echoes = 0;
    double heavy_ms = 0;
    std::thread heavy_client([&] {
        frame::Decoder decoder;
        int in_flight = 0;
        const auto start = Clock::now();
        for (; in_flight < o.window; ++in_flight) {
            if (!net::send_all(heavy.get(), message)) return;
        }
        while (in_flight > 0) {
            if (!read_frame(heavy.get(), decoder)) break;
            --in_flight;
            ++echoes;
            busy = true;
            if (!stop) {
                if (!net::send_all(heavy.get(), message)) break;
                ++in_flight;
            }
        }
        heavy_ms = ms_since(start);
        heavy_done = true;
    });
    // The light client starts once the heavy one is being served.
    const auto waiting = Clock::now();
    while (!busy && !heavy_done && ms_since(waiting) < 10000)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!busy) {
        stop = true;
        ::shutdown(heavy.get(), SHUT_RDWR);
        heavy_client.join();
        fmt::print("error=\"the heavy client got no echo\"\n");
        return 1;
    }

    frame::Decoder decoder;
    std::vector<double> rtt;
    for (int i = 0; i < o.frames; ++i) {
        const auto t = Clock::now();
        if (!net::send_all(light.get(), message) || !read_frame(light.get(), decoder)) {
            stop = true;
            ::shutdown(heavy.get(), SHUT_RDWR);
            heavy_client.join();
            fmt::print("error=\"the light client got no echo\"\n");
            return 1;
        }
        rtt.push_back(ms_since(t));
    }
    stop = true;
    heavy_client.join();
    // Our own CPU time, so the script can tell what else was running.
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    const auto cpu_ms = [](const timeval& t) { return t.tv_sec * 1000.0 + t.tv_usec / 1000.0; };
    fmt::print("tool_cpu_ms={:.0f} ", cpu_ms(usage.ru_utime) + cpu_ms(usage.ru_stime));
    fmt::print("p50_ms={:.2f} p99_ms={:.2f} heavy_per_s={:.0f}\n", percentile(rtt, 50),
               percentile(rtt, 99),
               heavy_ms > 0 ? static_cast<double>(echoes) * 1e3 / heavy_ms : 0);
    return 0;
}

// The options, or a message saying which one is wrong.
bool parse(int argc, char** argv, Options& o) {
    o.mode = argv[1];
    for (int i = 2; i < argc; i += 2) {
        const std::string_view key = argv[i];
        if (i + 1 >= argc) {
            fmt::print(stderr, "demo_tool: {} needs a value\n", key);
            return false;
        }
        const std::string value = argv[i + 1];
        try {
            if (key == "--host") {
                o.host = value;
            } else if (key == "--port") {
                o.port = static_cast<std::uint16_t>(std::stoi(value));
            } else if (key == "--count") {
                o.count = std::stoi(value);
            } else if (key == "--step") {
                o.step = std::max(1, std::stoi(value));
            } else if (key == "--hold") {
                o.hold = std::stod(value);
            } else if (key == "--megabytes") {
                o.megabytes = std::stoi(value);
            } else if (key == "--frames") {
                o.frames = std::max(1, std::stoi(value));
            } else if (key == "--window") {
                o.window = std::max(1, std::stoi(value));
            } else {
                fmt::print(stderr, "demo_tool: unknown option {}\n", key);
                return false;
            }
        } catch (const std::exception&) {
            fmt::print(stderr, "demo_tool: {} takes a number, not '{}'\n", key, value);
            return false;
        }
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (argc < 2 || !parse(argc, argv, o)) {
        fmt::print(stderr,
                   "usage: demo_tool idle|slow|latency --port P [options] (see bench/demo.cpp)\n");
        return 2;
    }
    try {
        if (o.mode == "idle") return run_idle(o);
        if (o.mode == "slow") return run_slow(o);
        if (o.mode == "latency") return run_latency(o);
    } catch (const std::exception& e) {
        fmt::print("error=\"{}\"\n", e.what());
        return 1;
    }
    fmt::print(stderr, "demo_tool: unknown mode {}\n", o.mode);
    return 2;
}
