#include "cli.hpp"

#include "net.hpp"
#include "trace_json.hpp"
#include "work.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

namespace cli {
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text) {
    double seconds = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ec != std::errc{} || end != text.data() + text.size() || !(seconds > 0) ||
        seconds > 86400) {
        return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

namespace {

std::string server_usage(const Program& p) {
    std::string modes;
    if (!p.modes.empty()) {
        modes = fmt::format("  --mode MODE       one of: {} (default {})\n",
                            fmt::join(p.modes, ", "), p.modes.front());
    }
    for (const Option& option : p.options) {
        modes += fmt::format("  {}{}{}  {}\n", option.name, option.value.empty() ? "" : " ",
                             option.value, option.help);
    }
    return fmt::format(
        "{0} -- {1}\n\n"
        "usage: {0} [options]\n\n"
        "  --host ADDR       address to listen on (default 127.0.0.1; ::1 for IPv6,\n"
        "                    0.0.0.0 or :: exposes the server to the network)\n"
        "  --port N          port to listen on (default 1234; 0 picks a free port)\n"
        "  --max-frame BYTES largest frame accepted (default {2})\n"
        "  --echo            send frames back to their sender instead of relaying\n"
        "  --max-pending BYTES  output held per client before its senders are paused\n"
        "                    (default {4}; see common/limits.hpp)\n"
        "  --stall-timeout SECONDS  disconnect a client that takes no byte for this long\n"
        "                    while output waits for it (default {5})\n"
        "  --work MICROSECONDS  spend that much CPU on each frame before relaying it\n"
        "                    (a CPU-bound handler; default 0)\n"
        "  --trace           log every event (accept, read, frame, queue, write, close)\n"
        "  --trace-json FILE the same events and how long each handler ran, as a\n"
        "                    timeline (Chrome trace format: Perfetto, ./workshop trace)\n"
        "{3}"
        "  --help            show this help\n\n"
        "When ready it prints 'listening on HOST:PORT'. Ctrl-C stops it gracefully.\n\n"
        "examples (from the repository's root):\n"
        "  build/{0} --port 0 --trace\n"
        "  build/{0} --host ::1 --port 5555 --echo\n",
        p.name, p.summary, frame::default_max_frame, modes, limits::Limits{}.max_pending,
        limits::Limits{}.stall_timeout.count() / 1000);
}

std::string client_usage(const Program& p) {
    return fmt::format(
        "{0} -- {1}\n\n"
        "usage: {0} [options]\n\n"
        "  --host ADDR   server address (default 127.0.0.1)\n"
        "  --port N      server port (default 1234)\n"
        "  --trace       log every event on stderr\n"
        "  --trace-json FILE  the same as a timeline (Chrome trace format)\n"
        "  --help        show this help\n\n"
        "Each line of standard input is sent as one frame; each frame received is\n"
        "printed as one line. At the end of input it exits once the server has it all.\n\n"
        "examples (from the repository's root):\n"
        "  build/{0} --port 1234\n"
        "  printf 'hello\\nworld\\n' | build/{0} --port 1234\n",
        p.name, p.summary);
}

// The problem and one line pointing at --help: the whole usage text would
// scroll the error itself out of sight.
[[noreturn]] void bad_usage(const std::string& usage, std::string_view problem) {
    const std::string_view name = std::string_view(usage).substr(0, usage.find(' '));
    fmt::print(stderr, "error: {}\nusage: {} [options]  ('{} --help' lists them)\n", problem, name,
               name);
    std::exit(2);
}

// --trace-json FILE: the file is opened now, so that a bad path is a usage
// error rather than a surprise at the first event.
void open_trace_json(const std::string& usage, std::string_view path, std::string_view program) {
    try {
        logs::json::open(std::string(path), program);
    } catch (const std::exception& e) {
        bad_usage(usage, fmt::format("--trace-json: {}", e.what()));
    }
}

template <typename Int>
std::optional<Int> parse_int(std::string_view text, Int min, Int max) {
    long long value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
        return std::nullopt;
    }
    return static_cast<Int>(value);
}

// Walks argv, handing each option (and its value, if it takes one) to `handle`.
// Returns false from `handle` for an unknown option.
template <typename Handler>
void walk(std::span<char*> args, const std::string& usage, Handler handle) {
    for (std::size_t i = 1; i < args.size(); ++i) {
        std::string_view opt = args[i];
        if (opt == "--help" || opt == "-h") {
            fmt::print("{}", usage);
            std::exit(0);
        }
        auto value = [&]() -> std::string_view {
            if (i + 1 >= args.size()) bad_usage(usage, fmt::format("{} needs a value", opt));
            return args[++i];
        };
        if (!handle(opt, value)) bad_usage(usage, fmt::format("unknown option '{}'", opt));
    }
}

}  // namespace

ServerOptions parse_server(const Program& program, std::span<char*> args) {
    net::ignore_sigpipe();  // before any socket: one dead peer must not kill us all
    const std::string usage = server_usage(program);
    ServerOptions o;
    if (!program.modes.empty()) o.mode = program.modes.front();
    walk(args, usage, [&](std::string_view opt, auto value) {
        if (opt == "--host") {
            o.host = value();
        } else if (opt == "--port") {
            auto v = value();
            auto port = parse_int<std::uint16_t>(v, 0, 65535);
            if (!port) bad_usage(usage, fmt::format("bad port '{}'", v));
            o.port = *port;
        } else if (opt == "--max-frame") {
            auto v = value();
            auto max = parse_int<std::uint32_t>(v, 0, 0xFFFFFFFF);
            if (!max) bad_usage(usage, fmt::format("bad --max-frame '{}'", v));
            o.max_frame = *max;
        } else if (opt == "--max-pending") {
            auto v = value();
            auto max = parse_int<long long>(v, 1, 1LL << 40);
            if (!max) bad_usage(usage, fmt::format("bad --max-pending '{}'", v));
            o.limits.max_pending = static_cast<std::size_t>(*max);
        } else if (opt == "--stall-timeout") {
            auto v = value();
            auto seconds = parse_seconds(v);
            if (!seconds) bad_usage(usage, fmt::format("bad --stall-timeout '{}'", v));
            o.limits.stall_timeout = *seconds;
        } else if (opt == "--work") {
            auto v = value();
            auto us = parse_int<long long>(v, 0, 10'000'000);
            if (!us) bad_usage(usage, fmt::format("bad --work '{}'", v));
            o.work = std::chrono::microseconds(*us);
            work::calibrate();  // now, not on the first frame
        } else if (opt == "--echo") {
            o.echo = true;
        } else if (opt == "--trace") {
            o.trace = true;
        } else if (opt == "--trace-json") {
            open_trace_json(usage, value(), program.name);
        } else if (opt == "--mode" && !program.modes.empty()) {
            std::string_view v = value();
            bool known = false;
            for (auto m : program.modes)
                known = known || m == v;
            if (!known) bad_usage(usage, fmt::format("unknown mode '{}'", v));
            o.mode = v;
        } else if (auto own = std::find_if(program.options.begin(), program.options.end(),
                                           [&](const Option& p) { return p.name == opt; });
                   own != program.options.end()) {
            o.extra[std::string(own->name)] = own->value.empty() ? "" : std::string(value());
        } else {
            return false;
        }
        return true;
    });
    return o;
}

ClientOptions parse_client(const Program& program, std::span<char*> args) {
    net::ignore_sigpipe();  // a server that resets us must not kill us mid-write
    const std::string usage = client_usage(program);
    ClientOptions o;
    walk(args, usage, [&](std::string_view opt, auto value) {
        if (opt == "--host") {
            o.host = value();
        } else if (opt == "--port") {
            auto v = value();
            auto port = parse_int<std::uint16_t>(v, 1, 65535);
            if (!port) bad_usage(usage, fmt::format("bad port '{}'", v));
            o.port = *port;
        } else if (opt == "--trace") {
            o.trace = true;
        } else if (opt == "--trace-json") {
            open_trace_json(usage, value(), program.name);
        } else {
            return false;
        }
        return true;
    });
    return o;
}

void print_frame(std::string_view payload) {
    std::fwrite(payload.data(), 1, payload.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

}  // namespace cli
