#include "work.hpp"

#include <algorithm>
#include <atomic>

namespace work {
namespace {

// One round: FNV-1a over the payload (or over 64 bytes of it, at least one
// byte, so an empty frame costs the same as a long one).
std::uint64_t round(std::uint64_t hash, std::string_view payload) {
    const std::size_t n = payload.empty() ? 1 : std::min<std::size_t>(payload.size(), 64);
    for (std::size_t i = 0; i < n; ++i) {
        const auto byte = payload.empty() ? 0u : static_cast<unsigned char>(payload[i]);
        hash = (hash ^ byte) * 0x100000001b3ULL;
    }
    return hash;
}

// Rounds per microsecond on this machine, measured once (about 20 ms).
double rounds_per_microsecond() {
    static const double rate = [] {
        using Clock = std::chrono::steady_clock;
        const std::string_view sample =
            "calibration sample, sixty-four bytes long, for the rounds!";
        std::uint64_t hash = 0xcbf29ce484222325ULL, rounds = 0;
        const auto start = Clock::now();
        auto elapsed = Clock::duration{};
        while (elapsed < std::chrono::milliseconds(20)) {
            for (int i = 0; i < 1000; ++i)
                hash = round(hash, sample);
            rounds += 1000;
            elapsed = Clock::now() - start;
        }
        static std::atomic<std::uint64_t> sink;
        sink = hash;  // the loop must not be optimised away
        return static_cast<double>(rounds) /
               static_cast<double>(
                   std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
    }();
    return rate;
}

}  // namespace

void calibrate() {
    rounds_per_microsecond();
}

std::uint64_t crunch(std::string_view payload, std::chrono::microseconds duration) {
    const auto rounds = static_cast<std::uint64_t>(rounds_per_microsecond() *
                                                   static_cast<double>(duration.count()));
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (std::uint64_t i = 0; i < rounds; ++i)
        hash = round(hash, payload);
    return hash;
}

}  // namespace work
