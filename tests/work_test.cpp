// The CPU-bound work of --work (common/work.hpp): deterministic, and it
// depends on the bytes. (How long it takes is the benchmark's business.)
#include <gtest/gtest.h>

#include <chrono>

#include "work.hpp"

namespace {

using std::chrono::microseconds;

TEST(Work, IsDeterministic) {
    EXPECT_EQ(work::crunch("frame", microseconds(200)), work::crunch("frame", microseconds(200)));
}

TEST(Work, DependsOnTheBytesAndTheAmount) {
    EXPECT_NE(work::crunch("frame a", microseconds(200)),
              work::crunch("frame b", microseconds(200)));
    EXPECT_NE(work::crunch("frame", microseconds(200)), work::crunch("frame", microseconds(400)));
}

TEST(Work, TakesAnEmptyFrame) {
    EXPECT_EQ(work::crunch("", microseconds(100)), work::crunch("", microseconds(100)));
}

}  // namespace
