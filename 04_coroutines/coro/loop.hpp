// coro/loop.hpp -- the event loop, and what only the loop can wait for: time,
// signals, the thread pool.
//
//   run(main)              asyncio.run: run the loop until main ends
//   sleep(duration)        asyncio.sleep
//   wait_for(coro, t)      asyncio.wait_for: TimeoutError once the coroutine
//                          has cleaned up from its cancellation
//   to_thread(fn)          asyncio.to_thread: fn() on libuv's thread pool
//   SignalWatch            loop.add_signal_handler, as an awaitable
//   observe(observer)      for a tool that watches the loop (a trace)
//
// Reading path, step 3 (README.md): the ready queue, and the loop's turn.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "coroutine.hpp"
#include "task.hpp"

namespace coro {

struct TimeoutError : std::runtime_error {
    TimeoutError() : std::runtime_error("timed out") {}
};

namespace detail {
void open_loop();  // (std::logic_error if a run is going on)
// Runs the loop until done(); then cancels the tasks left (once each), waits
// for them, frees those nothing can wake, closes every handle left open.
void run_loop(const std::function<bool()>& done);
struct Handle;  // a libuv handle on the heap (coro/uv.hpp)

// A one-shot timer that calls `fire` unless destroyed first.
class Timer {
  public:
    Timer(std::chrono::milliseconds delay, std::function<void()> fire);
    ~Timer();
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

  private:
    Handle* handle_;
    std::function<void()> fire_;
};

// Runs `work` on libuv's thread pool; ends once it has returned, even when
// cancelled meanwhile (then CancelledError): nothing it uses is freed under it.
Coroutine<void> run_in_pool(std::function<void()> work);
}  // namespace detail

// Runs `main` as a task on a fresh loop until it ends; then cancels the tasks
// still running and waits for them, closes every handle left, and checks that
// the loop closes. Returns main's result or rethrows its exception.
template <typename T>
T run(Coroutine<T> main) {
    detail::open_loop();
    Task<T> task = create_task(std::move(main));
    detail::run_loop([&] { return task.done(); });
    return task.result();
}

// For a tool that watches the loop, such as stage 04's --trace-json: called
// around each step of a task -- from the loop resuming it to its next
// suspension -- and around each of the loop's waits for I/O. Tasks are
// numbered in the order they were created, from 1 (run()'s main) in each
// run. Set it before run(); observe({}) stops it.
struct LoopObserver {
    void (*step)(bool begin, std::uint64_t task) = nullptr;
    void (*wait)(bool begin) = nullptr;
};
void observe(LoopObserver observer);

// Suspends the calling task for `delay`. Cancellable.
Coroutine<void> sleep(std::chrono::milliseconds delay);

// Awaits `coroutine` for at most `timeout`. On timeout it is cancelled, and we
// wait for it to finish cleaning up before throwing TimeoutError.
template <typename T>
Coroutine<T> wait_for(Coroutine<T> coroutine, std::chrono::milliseconds timeout) {
    Task<T> child = create_task(std::move(coroutine));
    bool timed_out = false;
    detail::Timer timer(timeout, [&] {
        timed_out = true;
        child.cancel();
    });
    try {
        co_return co_await child;
    } catch (const CancelledError&) {
        if (timed_out) throw TimeoutError();
        throw;
    }
}

// Runs fn() -- blocking work: a file, a lookup, a computation -- on libuv's
// thread pool, and resumes the task with its result or exception, back on the
// loop. fn must not touch the loop or unlocked shared state. Cancellable, but
// fn cannot be stopped once it runs: a cancelled await still waits for fn to
// return (dropping its result) before it throws CancelledError.
template <typename F>
Coroutine<std::invoke_result_t<F&>> to_thread(F fn) {
    Result<std::invoke_result_t<F&>> result;
    co_await detail::run_in_pool([&] {  // (on a pool thread)
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
                fn();
                result.set_value();
            } else {
                result.set_value(fn());
            }
        } catch (...) {
            result.set_exception(std::current_exception());
        }
    });
    co_return result.take();
}

// Catches `signals` (SIGINT, SIGTERM...) from the moment it is made. One that
// comes before anybody awaits wait() is kept, not lost to the default action
// (death) -- so a server makes its SignalWatch *before* it says it listens.
class SignalWatch {
  public:
    explicit SignalWatch(const std::vector<int>& signals);
    ~SignalWatch();
    SignalWatch(const SignalWatch&) = delete;
    SignalWatch& operator=(const SignalWatch&) = delete;
    // The next signal (at once if one came since the last wait). Cancellable.
    Coroutine<int> wait();

  private:
    std::vector<detail::Handle*> handles_;  // on the heap: never in a frame
    int received_ = 0;
    WaitList waiters_;
};

}  // namespace coro
