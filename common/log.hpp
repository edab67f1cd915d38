// Logging shared by every stage, so their output can be compared line by line.
//
// log(): one line on stderr for things an operator wants to see by default
// (connections coming and going, errors).
//
// Trace: with --trace, one line per event in a single format for all stages:
//
//   [trace   12.345ms th0] accept  client=1 peer=127.0.0.1:50312
//   [trace   12.400ms th1] read    client=1 bytes=9
//   [trace   12.410ms th1] frame   client=1 len=5
//   [trace   12.420ms th1] queue   client=2 bytes=9 pending=9
//   [trace   12.430ms th1] write   client=2 bytes=9 pending=0
//   [trace   12.500ms th1] pause   client=1 for=2 pending=1048580
//   [trace   12.900ms th1] resume  client=1
//   [trace   12.950ms th1] work    client=1 us=200
//   [trace   13.000ms th1] close   client=1 reason=end of stream
//
// `pending` is what the server still holds for that client after the event;
// `pause`/`resume` is backpressure: we stop reading from client 1 because
// client 2 has too much pending, and start again once it has drained.
//
// With --trace-json FILE the same events, and how long each handler ran, go
// to FILE for a timeline viewer (see trace_json.hpp).
//
// The thread tag shows the concurrency model at work: 01 in threads mode spreads
// events over many threads, 02-04 do everything on th0.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "trace_json.hpp"

namespace logs {

// A small number per thread (th0 is the first thread to log), easier to read
// than pthread ids.
int thread_number();
double elapsed_ms();

// A second SIGINT/SIGTERM while a graceful stop is under way means "now":
// every stage logs this one line -- how many bytes it still held for its
// clients, now dropped -- and exits at once with status 1.
[[noreturn]] void exit_now(std::size_t dropped_bytes);

template <typename... Args>
void log(fmt::format_string<Args...> format, Args&&... args) {
    // One fmt::print call per line: lines from different threads do not mix.
    fmt::print(stderr, "{}\n", fmt::format(format, std::forward<Args>(args)...));
}

// A span on the JSON trace's timeline (--trace-json, common/trace_json.hpp):
// from its construction to end() or its destructor, on this thread's track.
// Without --trace-json it does nothing.
class [[nodiscard]] Span {
  public:
    Span(std::string_view name, std::string args) {
        if (!json::active()) return;
        json::idle_end();  // a handler runs: the loop's wait is over
        name_ = name;
        args_ = std::move(args);
        start_ = json::now_us();
    }
    Span(const Span&) = delete;
    Span& operator=(const Span&) = delete;
    ~Span() { end(); }
    void end() {
        if (start_ < 0) return;
        json::span(name_, start_, json::now_us(), args_);
        start_ = -1;
    }

  private:
    std::string_view name_;  // a literal, in every use
    std::string args_;
    double start_ = -1;
};

class Trace {
  public:
    explicit Trace(bool enabled) : enabled_(enabled) {}
    bool enabled() const { return enabled_; }

    // For a client: from now on its lines name its connection by its local
    // address (conn=127.0.0.1:50312), which the server's accept line shows as
    // peer= -- so the two traces can be matched.
    void connected(std::string_view local, std::string_view server) {
        connection_ = local;
        emit("connect", 0, "server", server);
    }

    void accept(int client, std::string_view peer) const { emit("accept", client, "peer", peer); }
    void read(int client, std::size_t bytes) const { emit("read", client, "bytes", bytes); }
    void frame(int client, std::size_t length) const { emit("frame", client, "len", length); }
    void queue(int client, std::size_t bytes, std::size_t pending) const {
        emit("queue", client, "bytes", bytes, "pending", pending);
        json::pending(client, pending);
    }
    void write(int client, std::size_t bytes, std::size_t pending) const {
        emit("write", client, "bytes", bytes, "pending", pending);
        json::pending(client, pending);
    }
    // The client written to (a client's own output, for its trace lines).
    void write(int client, std::size_t bytes) const { emit("write", client, "bytes", bytes); }
    void pause(int client, int receiver, std::size_t pending) const {
        emit("pause", client, "for", receiver, "pending", pending);
    }
    void resume(int client) const { emit("resume", client, "", ""); }
    // --work: `us` microseconds of CPU spent on a frame from `client`, done now.
    void work(int client, long long us) const { emit("work", client, "us", us); }
    void close(int client, std::string_view reason) const {
        emit("close", client, "reason", reason);
        json::pending(client, 0);
    }

    // A handler's run, as a span on the JSON timeline: `name` is the
    // function's, `client` the one it serves (0: none in particular).
    Span span(std::string_view name, int client) const {
        return Span(name, json::active() ? args(client) : std::string());
    }

  private:
    template <typename Value>
    void emit(std::string_view event, int client, std::string_view key, const Value& value) const {
        if (json::active()) {
            json::instant(event, key.empty() ? args(client)
                                             : fmt::format("{},{}:{}", args(client),
                                                           json::quote(key), json_value(value)));
        }
        if (!enabled_) return;
        const std::string field = key.empty() ? "" : fmt::format(" {}={}", key, value);
        fmt::print(stderr, "[trace {:10.3f}ms th{}] {:<7} {}{}\n", elapsed_ms(), thread_number(),
                   event, who(client), field);
    }
    template <typename Value, typename Second>
    void emit(std::string_view event, int client, std::string_view key, const Value& value,
              std::string_view key2, const Second& value2) const {
        if (json::active()) {
            json::instant(event,
                          fmt::format("{},{}:{},{}:{}", args(client), json::quote(key),
                                      json_value(value), json::quote(key2), json_value(value2)));
        }
        if (!enabled_) return;
        fmt::print(stderr, "[trace {:10.3f}ms th{}] {:<7} {} {}={} {}={}\n", elapsed_ms(),
                   thread_number(), event, who(client), key, value, key2, value2);
    }
    std::string who(int client) const {
        return connection_.empty() ? fmt::format("client={}", client)
                                   : fmt::format("conn={}", connection_);
    }
    // The JSON event's args: the client served, or a client's own connection.
    std::string args(int client) const {
        return connection_.empty() ? fmt::format("\"client\":{}", client)
                                   : fmt::format("\"conn\":{}", json::quote(connection_));
    }
    template <typename Value>
    static std::string json_value(const Value& value) {
        if constexpr (std::is_arithmetic_v<Value>) {
            return fmt::format("{}", value);
        } else {
            return json::quote(value);
        }
    }
    bool enabled_;
    std::string connection_;  // a client's own local address, once connected
};

}  // namespace logs
