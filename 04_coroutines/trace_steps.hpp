// --trace-json for stage 04 (common/trace_json.hpp): what the coroutines'
// loop did, as spans on the timeline -- one for each step of each task (from
// the loop resuming it to the next co_await that suspends it), named after
// the task, and one for each of the loop's waits for I/O.
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "coro/loop.hpp"
#include "trace_json.hpp"

namespace trace_steps {

inline void start() {
    if (!logs::json::active()) return;
    static double step_began = 0;  // one loop, one thread
    coro::observe({
        .step =
            [](bool begin, std::uint64_t task) {
                if (begin) {
                    logs::json::idle_end();  // (the loop's wait ended before this step)
                    step_began = logs::json::now_us();
                } else {
                    logs::json::span(fmt::format("task {}", task), step_began, logs::json::now_us(),
                                     fmt::format("\"task\":{}", task));
                }
            },
        .wait =
            [](bool begin) {
                if (begin) {
                    logs::json::idle_begin("idle (libuv poll)");
                } else {
                    logs::json::idle_end();
                }
            },
    });
}

}  // namespace trace_steps
