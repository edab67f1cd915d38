#include <gtest/gtest.h>

#include <string>

#include "buffer.hpp"

TEST(OutputBuffer, PartialWritesKeepTheRestInOrder) {
    net::OutputBuffer out;
    out.append("hello ");
    out.append("world");
    EXPECT_EQ(out.size(), 11u);
    out.consume(3);
    EXPECT_EQ(out.pending(), "lo world");
    out.consume(8);
    EXPECT_TRUE(out.empty());
    out.append("again");
    EXPECT_EQ(out.pending(), "again");
}

TEST(OutputBuffer, CompactionKeepsContent) {
    net::OutputBuffer out;
    std::string expected;
    for (int i = 0; i < 5000; ++i) {
        const std::string chunk = std::to_string(i) + std::string(100, 'x');
        out.append(chunk);
        expected += chunk;
        out.consume(70);  // always a bit behind, so compaction kicks in
        expected.erase(0, 70);
        ASSERT_EQ(out.pending(), expected);
    }
}
