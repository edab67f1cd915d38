#include "log.hpp"

#include <atomic>
#include <chrono>

namespace logs {

namespace {
const auto start_time = std::chrono::steady_clock::now();
std::atomic<int> threads_seen{0};
}  // namespace

int thread_number() {
    thread_local const int number = threads_seen.fetch_add(1);
    return number;
}

double elapsed_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_time)
        .count();
}

}  // namespace logs
