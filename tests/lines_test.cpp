// The line splitter the clients feed stdin through (common/lines.hpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lines.hpp"

namespace {

std::vector<std::string> all(lines::Splitter& splitter) {
    std::vector<std::string> out;
    while (auto line = splitter.next())
        out.push_back(*line);
    return out;
}

TEST(Lines, SplitsOneReadHoldingManyLines) {
    lines::Splitter s;
    s.feed("one\ntwo\n\nthree\n");
    EXPECT_EQ(all(s), (std::vector<std::string>{"one", "two", "", "three"}));
    EXPECT_EQ(s.rest(), std::nullopt);
}

TEST(Lines, JoinsALineSpreadOverReads) {
    lines::Splitter s;
    s.feed("hel");
    EXPECT_TRUE(all(s).empty());
    s.feed("lo wor");
    EXPECT_TRUE(all(s).empty());
    s.feed("ld\nnext");
    EXPECT_EQ(all(s), std::vector<std::string>{"hello world"});
    EXPECT_EQ(s.rest(), "next");  // the last line had no newline
    EXPECT_EQ(s.rest(), std::nullopt);
}

TEST(Lines, ByteByByteGivesTheSameLines) {
    const std::string text = "a\nbb\n\nccc\n";
    lines::Splitter s;
    std::vector<std::string> got;
    for (char c : text) {
        s.feed(std::string_view(&c, 1));
        for (auto& line : all(s))
            got.push_back(line);
    }
    EXPECT_EQ(got, (std::vector<std::string>{"a", "bb", "", "ccc"}));
}

}  // namespace
