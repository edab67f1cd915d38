// Tests for the stage 04 server's framing adapter, frame::FrameReader: our
// wire protocol over the runtime's streams (04_coroutines/frame_reader.hpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "coro/loop.hpp"
#include "coro/streams.hpp"
#include "coro_test_helpers.hpp"
#include "frame_reader.hpp"

using namespace std::chrono_literals;
using coro::Coroutine;
using namespace coro_test;

namespace {

TEST(FrameReader, FrameIterationEndsCleanlyBetweenFrames) {
    auto result =
        with_connection(echo, [](coro::Connection& c) -> Coroutine<std::vector<std::string>> {
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
    auto result = with_connection(echo, [](coro::Connection& c) -> Coroutine<bool> {
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
    auto sender = [](coro::StreamReader reader, coro::StreamWriter writer) -> Coroutine<void> {
        co_await reader.readexactly(2);  // "go"
        writer.write(frame::encode("after"));
        co_await reader.read();  // until the client closes
        writer.close();
    };
    auto result = with_connection(sender, [](coro::Connection& c) -> Coroutine<std::string> {
        auto waiting = coro::create_task([&]() -> Coroutine<void> {
            frame::FrameReader frames(c.reader);
            co_await frames.next();
        });
        co_await coro::sleep(5ms);
        waiting.cancel();
        co_await join_cancelled(waiting);
        c.writer.write("go");
        c.reader.resume_reading();
        co_await c.reader.waiters().wait();  // the frame arrives while no FrameReader waits
        frame::FrameReader frames(c.reader);
        auto frame = co_await frames.next();
        c.writer.close();
        co_return frame.value_or("(none)");
    });
    EXPECT_EQ(result, "after");
}

TEST(FrameReader, AFrameOverTheLimitIsAnError) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Coroutine<bool> {
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
