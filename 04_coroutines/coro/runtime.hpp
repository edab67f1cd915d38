// coro/runtime.hpp -- the event loop side: an asyncio-shaped API on libuv.
//
//   run(main)              asyncio.run: run the loop until main finishes
//   spawn(callable)        asyncio.create_task: start a task now; returns a
//                          JoinHandle to co_await (result or exception),
//                          cancel(), or drop (the task goes on)
//   TaskGroup              asyncio.TaskGroup: create_task, wait for all, cancel all
//   sleep(duration)        asyncio.sleep
//   wait_for(task, t)      asyncio.wait_for: TimeoutError, once the task has
//                          cleaned up from its cancellation
//   gather(tasks)          asyncio.gather: all results in order; the first
//                          error cancels the rest
//   to_thread(fn)          asyncio.to_thread: fn() on libuv's thread pool
//   Event                  asyncio.Event
//   SignalWatch            loop.add_signal_handler: co_await watch.wait()
//
// Two rules keep it safe:
// 1. No uv_*_t lives inside a coroutine frame. Handles and requests live on
//    the heap (detail::Handle, freed in its close callback), so a frame can
//    go away while libuv still holds them.
// 2. libuv callbacks only resume a coroutine or put it on the ready queue.
//
// Cancellation works as in asyncio: JoinHandle::cancel() makes the await at
// which the task is suspended throw CancelledError. Frames are never
// destroyed mid-operation; the task unwinds through its own code. Every
// cancellable await is marked "Cancellable" below.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/runtime.hpp"
#include "task.hpp"

namespace coro {

struct TimeoutError : std::runtime_error {
    TimeoutError() : std::runtime_error("timed out") {}
};

// Runs `main` on a fresh loop until it finishes; then cancels the tasks still
// running (once each), waits for them, closes every handle left open, and
// checks that uv_loop_close succeeds. Returns main's result or rethrows its
// exception. A task left waiting for what can no longer happen is freed.
template <typename T>
T run(Task<T> main);

// The result of spawn(). Dropping it does not stop the task.
template <typename T>
class [[nodiscard]] JoinHandle {
  public:
    explicit JoinHandle(std::shared_ptr<detail::SpawnState<T>> s) : s_(std::move(s)) {}

    bool done() const { return s_->done; }
    void cancel() { s_->request_cancel(); }
    bool cancelled() const { return s_->cancelled; }  // it ended with CancelledError
    // The exception the task ended with, if any (it counts as retrieved).
    std::exception_ptr exception() const {
        s_->retrieved = true;
        return s_->error;
    }
    T result() const { return s_->result(); }  // of a finished task; rethrows
    // Runs when the task ends (right away if it has).
    void on_done(std::function<void()> callback) {
        if (s_->done) return callback();
        s_->done_callbacks.push_back(std::move(callback));
    }
    // Its result or exception. Cancellable: the cancel passes on to the task,
    // and this still waits for it to end.
    detail::Join<T> operator co_await() const { return detail::Join<T>(s_); }

  private:
    std::shared_ptr<detail::SpawnState<T>> s_;
};

template <typename T>
JoinHandle<T> spawn(Task<T> task) {
    auto s = std::make_shared<detail::SpawnState<T>>();
    s->task = std::move(task);
    return JoinHandle<T>(detail::start(std::move(s)));
}

// A callable returning a Task. A lambda coroutine's captures live in the
// lambda, not in the frame: spawn keeps the lambda alive while the task runs.
template <typename F>
requires std::is_invocable_v<F&>
auto spawn(F&& callable) {
    using T = typename std::invoke_result_t<F&>::value_type;
    auto kept = std::make_shared<std::decay_t<F>>(std::forward<F>(callable));
    auto state = std::make_shared<detail::SpawnState<T>>();
    state->task = (*kept)();
    state->callable = std::move(kept);
    return JoinHandle<T>(detail::start(std::move(state)));
}

// Structured concurrency, as in asyncio 3.11: tasks with one owner, who
// waits for them all (co_await group.wait()) before going on, so no task
// outlives the code that started it; cancel() cancels those still running.
// Unlike asyncio's, one task's exception does not cancel the others (a
// server's connections are independent): it is reported, like any exception
// nobody retrieved. A TaskGroup is a handle: copies share the same tasks.
class TaskGroup {
  public:
    void create_task(Task<void> task) { add(spawn(std::move(task))); }
    template <typename F>
    requires std::is_invocable_v<F&>
    void create_task(F&& callable) { add(spawn(std::forward<F>(callable))); }

    std::size_t size() const { return s_->running.size(); }  // tasks not finished yet
    void cancel() {
        for (auto& task : s_->running)
            task.cancel();
    }
    // Returns once no task is left, those created meanwhile included. Cancellable.
    Task<void> wait() {
        auto state = s_;  // the group may go while we wait
        while (!state->running.empty())
            co_await detail::park(state->waiters);
    }

  private:
    struct State {
        std::list<JoinHandle<void>> running;
        detail::WaitList waiters;
    };
    void add(JoinHandle<void> task) {
        auto it = s_->running.insert(s_->running.end(), std::move(task));
        // Forget the task when it ends; wake wait() when the last one has.
        it->on_done([state = s_, it] {
            state->running.erase(it);
            if (state->running.empty()) state->waiters.wake_all();
        });
    }
    std::shared_ptr<State> s_ = std::make_shared<State>();
};

// Suspends the calling task for `delay`. Cancellable.
inline Task<void> sleep(std::chrono::milliseconds delay) {
    detail::WaitList woken;
    detail::Timer timer(delay, [&woken] { woken.wake_all(); });  // (a cancel stops it)
    co_await detail::park(woken);
}

// Awaits `task` for at most `timeout`. On timeout the task is cancelled, and
// we wait for it to finish cleaning up before throwing TimeoutError.
template <typename T>
Task<T> wait_for(Task<T> task, std::chrono::milliseconds timeout) {
    JoinHandle<T> child = spawn(std::move(task));
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

// Runs the tasks concurrently; their results, in order. The first to fail
// cancels the others, and once all have finished gather rethrows its error.
// (Task<std::vector<T>>, or Task<void> for tasks of void.)
template <typename T>
Task<detail::Gathered<T>> gather(std::vector<Task<T>> tasks);

// Runs fn() -- blocking work: a file, a lookup, a computation -- on libuv's
// thread pool (uv_queue_work), and resumes the task with its result or
// exception, back on the loop. fn must not touch the loop or unlocked shared
// state. Cancellable, but fn cannot be stopped once it runs: a cancelled
// awaiter still waits for fn to return (dropping its result) before it
// throws CancelledError, so nothing fn uses is freed under it.
template <typename F>
Task<std::invoke_result_t<F&>> to_thread(F fn);

class Event {
  public:
    void set() {
        is_set_ = true;
        waiters_.wake_all();
    }
    void clear() { is_set_ = false; }
    bool is_set() const { return is_set_; }
    Task<void> wait() {  // Cancellable.
        while (!is_set_)
            co_await detail::park(waiters_);
    }

  private:
    bool is_set_ = false;
    detail::WaitList waiters_;
};

// Catches `signals` (SIGINT, SIGTERM...) from the moment it is made. One that
// comes before anybody awaits wait() is kept, not lost to the default action
// (death) -- so a server makes its SignalWatch *before* it says it listens.
class SignalWatch {
  public:
    explicit SignalWatch(const std::vector<int>& signals);
    ~SignalWatch();
    SignalWatch(const SignalWatch&) = delete;
    SignalWatch& operator=(const SignalWatch&) = delete;
    // The next signal received (at once if one came since the last wait).
    // Cancellable.
    Task<int> wait();

  private:
    std::vector<detail::Handle*> handles_;  // on the heap: never in a frame
    int received_ = 0;
    detail::WaitList waiters_;
};

// Waits until one of `signals` arrives; returns it. Cancellable.
Task<int> wait_for_signal(std::vector<int> signals);

}  // namespace coro

#include "detail/runtime_impl.hpp"  // the templates declared above
