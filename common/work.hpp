// CPU-bound work for a frame: what --work MICROSECONDS makes every server do
// before it relays a frame. It stands for a handler that computes (parses,
// compresses, checks a signature...) rather than waits.
//
// It is a fixed amount of computation, not "busy until the clock says so":
// the number of rounds is calibrated once, on one thread, so that one frame
// costs about `duration` of CPU. Two frames on one core then take twice as
// long as on two cores -- which is the difference between concurrency and
// parallelism that stages 01 (threads) and 02/03 (one loop) show.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace work {

// Mixes the payload's bytes for about `duration` of CPU time and returns the
// result (a checksum nobody needs: it keeps the compiler from skipping the
// work). Deterministic: the same payload and duration give the same result.
// Safe to call from any thread.
std::uint64_t crunch(std::string_view payload, std::chrono::microseconds duration);

// Measures this machine's speed (about 20 ms), if not done yet. A server
// calls it at start-up, so the first frame does not pay for it.
void calibrate();

}  // namespace work
