// Unit tests for the sans-I/O framing module (common/frame.hpp).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "frame.hpp"

namespace {

std::vector<std::string> decode_all(frame::Decoder& decoder) {
    std::vector<std::string> frames;
    while (auto f = decoder.next())
        frames.push_back(*f);
    return frames;
}

TEST(Encode, HeaderIsBigEndianLength) {
    EXPECT_EQ(frame::encode("abc"), std::string("\0\0\0\3abc", 7));
    EXPECT_EQ(frame::encode(""), std::string("\0\0\0\0", 4));
    EXPECT_EQ(frame::encode(std::string(0x010203, 'x')).substr(0, 4), std::string("\0\1\2\3", 4));
}

TEST(Decoder, OneByteAtATime) {
    frame::Decoder decoder;
    const std::string wire = frame::encode("hello") + frame::encode("") + frame::encode("world");
    std::vector<std::string> frames;
    for (char c : wire) {
        decoder.feed({&c, 1});
        for (auto& f : decode_all(decoder))
            frames.push_back(f);
    }
    EXPECT_EQ(frames, (std::vector<std::string>{"hello", "", "world"}));
    EXPECT_FALSE(decoder.failed());
    EXPECT_FALSE(decoder.mid_frame());
}

TEST(Decoder, ManyFramesInOneChunk) {
    frame::Decoder decoder;
    std::string wire;
    for (int i = 0; i < 100; ++i)
        wire += frame::encode(std::to_string(i));
    decoder.feed(wire);
    auto frames = decode_all(decoder);
    ASSERT_EQ(frames.size(), 100u);
    EXPECT_EQ(frames[42], "42");
}

TEST(Decoder, RandomChunkingsRoundTrip) {
    std::mt19937 rng(20261124);
    for (int round = 0; round < 200; ++round) {
        std::vector<std::string> sent;
        std::string wire;
        const int count = std::uniform_int_distribution<>(0, 30)(rng);
        for (int i = 0; i < count; ++i) {
            // Mostly small frames, sometimes empty, sometimes large.
            const int size_class = std::uniform_int_distribution<>(0, 9)(rng);
            const std::size_t size = size_class == 0 ? 0
                                     : size_class == 9
                                         ? std::uniform_int_distribution<>(0, 70000)(rng)
                                         : std::uniform_int_distribution<>(1, 300)(rng);
            std::string payload(size, '\0');
            for (auto& c : payload)
                c = static_cast<char>(rng());  // any byte, '\0' and '\n' included
            wire += frame::encode(payload);
            sent.push_back(std::move(payload));
        }
        frame::Decoder decoder;
        std::vector<std::string> received;
        std::size_t pos = 0;
        while (pos < wire.size()) {
            const std::size_t chunk = std::uniform_int_distribution<std::size_t>(1, 5000)(rng);
            decoder.feed(std::string_view(wire).substr(pos, chunk));
            pos += chunk;
            for (auto& f : decode_all(decoder))
                received.push_back(std::move(f));
        }
        ASSERT_FALSE(decoder.failed());
        ASSERT_FALSE(decoder.mid_frame());
        ASSERT_EQ(received, sent) << "round " << round;
    }
}

TEST(Decoder, LimitIsInclusive) {
    frame::Decoder at_limit(1000);
    at_limit.feed(frame::encode(std::string(1000, 'a')));
    EXPECT_FALSE(at_limit.failed());
    EXPECT_EQ(decode_all(at_limit).size(), 1u);

    frame::Decoder over_limit(1000);
    over_limit.feed(frame::encode(std::string(1001, 'a')));
    EXPECT_TRUE(over_limit.failed());
    EXPECT_TRUE(decode_all(over_limit).empty());
    EXPECT_NE(over_limit.error().find("1001"), std::string::npos) << over_limit.error();
}

TEST(Decoder, DefaultLimitIsOneMebibyte) {
    frame::Decoder decoder;
    EXPECT_EQ(decoder.max_frame(), 1048576u);
    decoder.feed(std::string("\x00\x10\x00\x01", 4));  // 1048577
    EXPECT_TRUE(decoder.failed());
}

// Counts the bytes operator new hands out, to prove a hostile length prefix
// does not make the decoder reserve 4 GiB.
std::size_t allocated_bytes = 0;

}  // namespace

void* operator new(std::size_t size) {
    allocated_bytes += size;
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}

namespace {

TEST(Decoder, HugeLengthRejectedWithoutAllocating) {
    frame::Decoder decoder;
    const std::size_t before = allocated_bytes;
    decoder.feed(
        std::string("\xFF\xFF\xFF\xFF"
                    "some bytes that follow",
                    26));
    EXPECT_TRUE(decoder.failed());
    EXPECT_LT(allocated_bytes - before, 4096u) << "decoder allocated for a frame it rejected";
    EXPECT_FALSE(decoder.next().has_value());
}

TEST(Decoder, FramesBeforeAnErrorAreStillDelivered) {
    frame::Decoder decoder(10);
    decoder.feed(frame::encode("ok") + std::string("\0\0\0\x0B", 4));
    EXPECT_TRUE(decoder.failed());
    EXPECT_EQ(decode_all(decoder), std::vector<std::string>{"ok"});
}

TEST(Decoder, InputAfterAnErrorIsIgnored) {
    frame::Decoder decoder(10);
    decoder.feed(std::string("\0\0\0\x0B", 4));
    decoder.feed(frame::encode("late"));
    EXPECT_TRUE(decode_all(decoder).empty());
}

TEST(Decoder, PartialFrameIsReportedNotDelivered) {
    frame::Decoder decoder;
    decoder.feed(frame::encode("complete") + frame::encode("partial").substr(0, 6));
    EXPECT_EQ(decode_all(decoder), std::vector<std::string>{"complete"});
    EXPECT_TRUE(decoder.mid_frame());
    decoder.feed(frame::encode("partial").substr(6));
    EXPECT_EQ(decode_all(decoder), std::vector<std::string>{"partial"});
    EXPECT_FALSE(decoder.mid_frame());
}

}  // namespace
