// Tests for the stage 04 server's framing adapter, frame::FrameReader: our
// wire protocol over the runtime's streams (04_coroutines/frame_reader.hpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "coro/runtime.hpp"
#include "coro/streams.hpp"
#include "frame_reader.hpp"

using namespace std::chrono_literals;
using coro::Task;

namespace {

template <typename T>
Task<void> join_cancelled(coro::JoinHandle<T>& handle) {
    try {
        co_await handle;
    } catch (const coro::CancelledError&) {
    }
}

// A server running `handler`, a connection to it, and `body` on the client side.
template <typename Handler, typename Body>
auto with_connection(Handler handler, Body body) {
    using Result = typename std::invoke_result_t<Body&, coro::Connection&>::value_type;
    auto main = [](Handler h, Body b) -> Task<Result> {
        auto server = co_await coro::start_server(h, "127.0.0.1", 0);
        const std::string address = server.address();
        const auto port =
            static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
        coro::Connection connection = co_await coro::open_connection("127.0.0.1", port);
        auto result = b(connection);
        server.close();
        co_return co_await std::move(result);
    };
    return coro::run(main(std::move(handler), std::move(body)));
}

Task<void> echo(coro::StreamReader reader, coro::StreamWriter writer) {
    while (true) {
        std::string bytes = co_await reader.read();
        if (bytes.empty()) break;
        writer.write(bytes);
        co_await writer.drain();
    }
    writer.close();
}

TEST(FrameReader, FrameIterationEndsCleanlyBetweenFrames) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Task<std::vector<std::string>> {
        c.writer.write(frame::encode("one") + frame::encode("") + frame::encode("three"));
        c.writer.write_eof();
        std::vector<std::string> frames;
        frame::FrameReader reader(c.reader);
        while (auto f = co_await reader.next())
            frames.push_back(*f);
        co_return frames;
    });
    EXPECT_EQ(result, (std::vector<std::string>{"one", "", "three"}));
}

TEST(FrameReader, FrameIterationReportsAStreamThatEndsMidFrame) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Task<bool> {
        c.writer.write(frame::encode("whole") + frame::encode("cut short").substr(0, 6));
        c.writer.write_eof();
        frame::FrameReader reader(c.reader);
        EXPECT_EQ(co_await reader.next(), "whole");
        try {
            co_await reader.next();
        } catch (const coro::IncompleteReadError&) {
            co_return true;
        }
        co_return false;
    });
    EXPECT_TRUE(result);
}

// A FrameReader waiting for bytes is parked on the stream's readers. Cancelled
// and gone, it leaves nothing behind: the frame that comes later is kept in the
// stream's buffer for the next reader.
TEST(FrameReader, ACancelledFrameReaderLosesNothing) {
    auto sender = [](coro::StreamReader reader, coro::StreamWriter writer) -> Task<void> {
        co_await reader.read_exactly(2);  // "go"
        writer.write(frame::encode("after"));
        co_await reader.read();  // until the client closes
        writer.close();
    };
    auto result = with_connection(sender, [](coro::Connection& c) -> Task<std::string> {
        auto waiting = coro::spawn([&]() -> Task<void> {
            frame::FrameReader frames(c.reader);
            co_await frames.next();
        });
        co_await coro::sleep(5ms);
        waiting.cancel();
        co_await join_cancelled(waiting);
        c.writer.write("go");
        co_await c.reader.fill();  // the frame arrives while no FrameReader waits
        frame::FrameReader frames(c.reader);
        auto frame = co_await frames.next();
        c.writer.close();
        co_return frame.value_or("(none)");
    });
    EXPECT_EQ(result, "after");
}

TEST(FrameReader, AFrameOverTheLimitIsAnError) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Task<bool> {
        c.writer.write(frame::encode(std::string(100, 'x')));
        frame::FrameReader frames(c.reader, 10);
        try {
            co_await frames.next();
        } catch (const frame::FrameError&) {
            c.writer.close();
            co_return true;
        }
        co_return false;
    });
    EXPECT_TRUE(result);
}

}  // namespace
