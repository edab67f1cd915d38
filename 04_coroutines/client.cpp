// Stage 04 client: the talk's Client class, in C++ coroutines.
//
// Two tasks run side by side on one thread: one reads frames and prints them,
// one reads stdin lines and sends them. main starts both with create_task (the
// talk's ensure_future), waits for the receiver, and cancels the sender if the
// server went away first.
#include <cstdio>
#include <optional>
#include <string>

#include "cli.hpp"
#include "coro/loop.hpp"
#include "coro/streams.hpp"
#include "frame.hpp"
#include "frame_reader.hpp"
#include "log.hpp"
#include "trace_steps.hpp"

using coro::Coroutine;
using logs::log;

namespace {

constexpr int self = 0;  // the client's own events are traced as client=0

class Client {
  public:
    explicit Client(logs::Trace& trace) : trace_(trace) {}

    Coroutine<void> connect(std::string host, std::uint16_t port) {
        auto [reader, writer] = co_await coro::open_connection(std::move(host), port);
        writer_ = writer;
        trace_.connected(writer_.local(), writer_.peer());
        writer_.on_written([this](std::size_t n) { trace_.write(self, n); });
        frames_.emplace(reader);
        frames_->on_bytes = [this](std::size_t n) { trace_.read(self, n); };
    }

    // Unlike the talk's send_data, this waits (drain) when the server reads
    // more slowly than we write, so the queue stays small.
    Coroutine<void> send_data(std::string_view payload) {
        writer_.write(frame::encode(payload));
        co_await writer_.drain();
    }

    // The next frame, or nullopt when the server has closed the connection.
    // (Reads the whole frame, never "4 bytes, hopefully".)
    Coroutine<std::optional<std::string>> read_data() { co_return co_await frames_->next(); }

    void finish_sending() { writer_.write_eof(); }
    void close() { writer_.close(); }

  private:
    logs::Trace& trace_;
    coro::StreamWriter writer_;
    std::optional<frame::FrameReader> frames_;
};

Coroutine<void> print_frames(Client& client, const logs::Trace& trace) {
    while (auto payload = co_await client.read_data()) {
        trace.frame(self, payload->size());
        cli::print_frame(*payload);
    }
}

Coroutine<void> send_lines(Client& client) {
    coro::StreamReader input = coro::open_stdin();
    while (true) {
        // As asyncio's: the line with its '\n', and "" at the end of stdin.
        std::string line = co_await input.readline();
        if (line.empty()) break;
        if (line.back() == '\n') line.pop_back();
        co_await client.send_data(line);
    }
    client.finish_sending();  // half-close: the server closes when done with us
}

Coroutine<int> main_task(const cli::ClientOptions& options, logs::Trace& trace) {
    Client client(trace);
    try {
        co_await client.connect(options.host, options.port);
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        co_return 1;
    }
    auto receiver = coro::create_task([&] { return print_frames(client, trace); });
    auto sender = coro::create_task([&] { return send_lines(client); });

    int exit_code = 0;
    try {
        co_await receiver;  // ends when the server closes the connection
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        exit_code = 1;
    }
    if (!sender.done()) {
        if (exit_code == 0) log("error: server closed the connection");
        exit_code = 1;
        sender.cancel();  // stop reading stdin
    }
    try {
        co_await sender;
    } catch (const coro::CancelledError&) {
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        exit_code = 1;
    }
    client.close();
    co_return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    const auto options = cli::parse_client(
        {.name = "04_coroutines/client", .summary = "chat client with C++20 coroutines"},
        {argv, static_cast<std::size_t>(argc)});
    logs::Trace trace(options.trace);
    trace_steps::start();  // --trace-json: each task's steps on the timeline
    try {
        return coro::run(main_task(options, trace));
    } catch (const std::exception& e) {
        log("error: {}", e.what());
        return 1;
    }
}
