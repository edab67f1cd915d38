// The event loop side of the coroutine runtime: an asyncio-shaped API on libuv.
//
//   run(main)            asyncio.run: run the loop until main finishes
//   spawn(callable)      asyncio.ensure_future / create_task: start a task now,
//                        get a JoinHandle to await or cancel it
//   sleep(duration)      asyncio.sleep
//   wait_for(task, t)    asyncio.wait_for: TimeoutError, after the task has
//                        cleaned up from its cancellation
//   gather(tasks)        asyncio.gather: all results; the first error cancels
//                        the rest
//   TaskGroup            asyncio.TaskGroup: create_task, wait for all, cancel all
//   Event                asyncio.Event
//
// Two rules keep it safe:
// 1. No uv_*_t lives inside a coroutine frame. Handles live on the heap in a
//    detail::Handle, freed in their close callback, so a frame can go away
//    while libuv still holds a handle.
// 2. libuv callbacks only resume a coroutine or put it on the ready queue.
//
// Cancellation works as in asyncio: JoinHandle::cancel() makes the await at
// which the task is suspended throw CancelledError. Frames are never
// destroyed mid-operation; the task unwinds through its own code.
#pragma once

#include <uv.h>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "task.hpp"

namespace coro {

struct TimeoutError : std::runtime_error {
    TimeoutError() : std::runtime_error("timed out") {}
};

namespace detail {

// The unit of cancellation: one per spawned task (and one for run's main).
// Awaiters that can be interrupted register an on_cancel hook while the task
// is suspended in them.
struct TaskRoot {
    bool cancel_requested = false;
    bool finished = false;
    std::function<void()> on_cancel;

    virtual ~TaskRoot() = default;
    // Asks the task to stop: interrupts its current await, or, if it is not
    // suspended in a cancellable one, makes the next one throw.
    void request_cancel();
    // For awaiters, before suspending: a cancellation was requested earlier
    // and not yet delivered. Consumes it (like asyncio, one cancel, one error).
    bool take_cancel() { return std::exchange(cancel_requested, false); }
};

// The task whose code is running now; awaiters remember it when they suspend.
TaskRoot* current_root();

// Resumes a coroutine as part of `root` (now, on this stack).
void resume(std::coroutine_handle<> h, TaskRoot* root);
// Resumes it on a later turn of the loop, from the ready queue.
void schedule(std::coroutine_handle<> h, TaskRoot* root);

uv_loop_t* loop();

// A libuv handle on the heap. close() asks libuv to close it; the memory goes
// in the close callback, never earlier. Every open Handle is known to the
// runtime, so run() can close any that are left at the end.
struct Handle {
    uv_any_handle uv;                 // uv.handle.data points back to this Handle
    void* owner = nullptr;            // the object its callbacks are for
    std::function<void()> on_closed;  // optional, runs in the close callback

    Handle();
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    uv_handle_t* handle() { return &uv.handle; }
    uv_stream_t* stream() { return &uv.stream; }
    void close();  // idempotent

  private:
    ~Handle();  // only the close callback deletes
    friend void close_callback(uv_handle_t*);
};

// A one-shot timer that calls `fire` unless stopped first. Owns a Handle.
class Timer {
  public:
    Timer(std::chrono::milliseconds delay, std::function<void()> fire);
    ~Timer() { stop(); }
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    void stop();

  private:
    Handle* handle_;
    std::function<void()> fire_;
};

// Wakes coroutines parked on a list (drain, Event, join...) and forgets them.
struct Waiter {
    std::coroutine_handle<> handle;
    TaskRoot* root;
};
void wake_all(std::vector<Waiter>& waiters);

// The awaiter behind most waits in the runtime: park on a list until woken,
// or until cancelled -- then unpark and throw CancelledError.
// (g++ 12 may destroy a brace-initialised temporary inside a co_await
// expression twice, so awaiters are made by functions like park(), never as
// `co_await ParkAwaiter{...}`.)
class ParkAwaiter {
  public:
    explicit ParkAwaiter(std::vector<Waiter>& list) : list_(list) {}
    ParkAwaiter(const ParkAwaiter&) = delete;
    ParkAwaiter& operator=(const ParkAwaiter&) = delete;

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h);
    void await_resume();

  private:
    std::vector<Waiter>& list_;
    bool cancelled_ = false;
    std::coroutine_handle<> me_;
    TaskRoot* root_ = nullptr;
};
inline ParkAwaiter park(std::vector<Waiter>& list) {
    return ParkAwaiter(list);
}

}  // namespace detail

// ---------------------------------------------------------------------------

class Event {
  public:
    void set() {
        is_set_ = true;
        detail::wake_all(waiters_);
    }
    void clear() { is_set_ = false; }
    bool is_set() const { return is_set_; }
    Task<void> wait() {
        while (!is_set_)
            co_await detail::park(waiters_);
    }

  private:
    bool is_set_ = false;
    std::vector<detail::Waiter> waiters_;
};

namespace detail {

// What a spawned task leaves behind: its result or error, and who waits.
template <typename T>
struct SpawnState : TaskRoot {
    std::shared_ptr<void> callable;  // keeps a lambda's captures alive
    Task<T> task;
    bool done = false;
    std::conditional_t<std::is_void_v<T>, bool, std::optional<T>> value{};
    std::exception_ptr error;
    bool retrieved = false;
    std::vector<Waiter> waiters;
    std::vector<std::function<void()>> done_callbacks;

    ~SpawnState() override;
};

void report_unretrieved(const std::exception_ptr& error);
void track(TaskRoot* root);
void untrack(TaskRoot* root);

template <typename T>
SpawnState<T>::~SpawnState() {
    if (error && !retrieved) report_unretrieved(error);
}

// A coroutine that runs a spawned task to its end and records the outcome.
// Its frame frees itself when it finishes (final_suspend never suspends).
struct Driver {
    struct promise_type {
        Driver get_return_object() {
            return {std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> handle;
};

template <typename T>
Driver drive(std::shared_ptr<SpawnState<T>> state) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await state->task;
            state->value = true;
        } else {
            state->value = co_await state->task;
        }
    } catch (...) {
        state->error = std::current_exception();
    }
    state->task = {};  // free the task's frame now, not when the last handle goes
    state->done = true;
    state->finished = true;
    state->on_cancel = nullptr;
    untrack(state.get());
    wake_all(state->waiters);
    for (auto& callback : std::exchange(state->done_callbacks, {}))
        callback();
}

}  // namespace detail

// The result of spawn(): await it for the task's result (or exception), or
// cancel() it. Dropping it does not stop the task.
template <typename T>
class [[nodiscard]] JoinHandle {
  public:
    explicit JoinHandle(std::shared_ptr<detail::SpawnState<T>> state) : state_(std::move(state)) {}

    bool done() const { return state_->done; }
    void cancel() { state_->request_cancel(); }
    // True when the task ended with CancelledError.
    bool cancelled() const;
    // The exception the task ended with, if any (marks it as retrieved).
    std::exception_ptr exception() const {
        state_->retrieved = true;
        return state_->error;
    }
    // The result of a finished task; rethrows its exception.
    T result() const {
        state_->retrieved = true;
        if (state_->error) std::rethrow_exception(state_->error);
        if constexpr (!std::is_void_v<T>) return std::move(*state_->value);
    }
    // Runs when the task ends (right away if it has).
    void on_done(std::function<void()> callback) {
        if (state_->done) {
            callback();
        } else {
            state_->done_callbacks.push_back(std::move(callback));
        }
    }

    // Awaiting a task's handle. If the awaiting task is cancelled meanwhile,
    // the cancellation passes on to the awaited task (as in asyncio) and we
    // keep waiting for it to finish: no task is abandoned half-way.
    struct Awaiter {
        std::shared_ptr<detail::SpawnState<T>> state;
        detail::TaskRoot* root = nullptr;

        bool await_ready() const noexcept { return state->done; }
        void await_suspend(std::coroutine_handle<> h) {
            root = detail::current_root();
            if (root && root->take_cancel()) state->request_cancel();
            state->waiters.push_back({h, root});
            if (root) {
                root->on_cancel = [s = state.get()] { s->request_cancel(); };
            }
        }
        T await_resume() {
            if (root) root->on_cancel = nullptr;
            state->retrieved = true;
            if (state->error) std::rethrow_exception(state->error);
            if constexpr (!std::is_void_v<T>) return std::move(*state->value);
        }
    };
    Awaiter operator co_await() const noexcept { return Awaiter{state_}; }

  private:
    std::shared_ptr<detail::SpawnState<T>> state_;
};

bool is_cancelled_error(const std::exception_ptr& error);

template <typename T>
bool JoinHandle<T>::cancelled() const {
    return state_->done && is_cancelled_error(state_->error);
}

template <typename T>
JoinHandle<T> spawn(Task<T> task) {
    auto state = std::make_shared<detail::SpawnState<T>>();
    state->task = std::move(task);
    detail::track(state.get());
    detail::Driver driver = detail::drive(state);
    detail::schedule(driver.handle, state.get());
    return JoinHandle<T>(std::move(state));
}

// Spawn a callable that returns a Task. A lambda coroutine's captures live in
// the lambda object, not in the coroutine frame: keep the lambda alive for as
// long as the task runs, or `[x] -> Task<> {... x ...}` reads freed memory.
template <typename F>
requires std::is_invocable_v<F&>
auto spawn(F&& callable) {
    using TaskType = std::invoke_result_t<F&>;
    using T = typename TaskType::value_type;
    auto kept = std::make_shared<std::decay_t<F>>(std::forward<F>(callable));
    auto state = std::make_shared<detail::SpawnState<T>>();
    state->callable = kept;
    state->task = (*kept)();
    detail::track(state.get());
    detail::Driver driver = detail::drive(state);
    detail::schedule(driver.handle, state.get());
    return JoinHandle<T>(std::move(state));
}

// Structured concurrency, as asyncio 3.11's TaskGroup: tasks that belong to
// one owner, who waits for all of them before going on --
//
//   coro::TaskGroup connections;
//   connections.create_task(handle(client));   // as many as you like
//   co_await connections.wait();               // until every one has finished
//
// -- so no task outlives the code that started it. cancel() cancels every
// task still running (wait() then returns once they have unwound). Unlike
// asyncio's, one task's exception does not cancel the others (a server's
// connections are independent): it is reported, like any exception nobody
// retrieved. A TaskGroup is a handle: copies share the same tasks.
class TaskGroup {
  public:
    TaskGroup() : s_(std::make_shared<State>()) {}

    void create_task(Task<void> task) { add(spawn(std::move(task))); }
    template <typename F>
    requires std::is_invocable_v<F&>
    void create_task(F&& callable) { add(spawn(std::forward<F>(callable))); }

    std::size_t size() const { return s_->running.size(); }  // tasks not finished yet
    void cancel() {
        for (auto& task : s_->running)
            task.cancel();
    }
    // Returns once no task is left (those created meanwhile included). Cancellable.
    Task<void> wait() {
        auto state = s_;  // a copy: the group may go while we wait
        while (!state->running.empty())
            co_await detail::park(state->waiters);
    }

  private:
    struct State {
        std::list<JoinHandle<void>> running;
        std::vector<detail::Waiter> waiters;
    };
    void add(JoinHandle<void> task) {
        auto it = s_->running.insert(s_->running.end(), std::move(task));
        // Forget the task when it ends (the list node, not the task: its driver
        // still holds its state), and wake wait() when the last one has.
        it->on_done([state = s_, it] {
            state->running.erase(it);
            if (state->running.empty()) detail::wake_all(state->waiters);
        });
    }
    std::shared_ptr<State> s_;
};

// Suspends the calling task for `delay`. Cancellable.
class SleepAwaiter {
  public:
    explicit SleepAwaiter(std::chrono::milliseconds delay) : delay_(delay), park_(waiters_) {}
    SleepAwaiter(const SleepAwaiter&) = delete;
    SleepAwaiter& operator=(const SleepAwaiter&) = delete;

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!park_.await_suspend(h)) return false;  // already cancelled
        timer_.emplace(delay_, [this] { detail::wake_all(waiters_); });
        return true;
    }
    void await_resume() {
        timer_.reset();  // stops the timer if we were cancelled first
        park_.await_resume();
    }

  private:
    std::chrono::milliseconds delay_;
    std::vector<detail::Waiter> waiters_;
    detail::ParkAwaiter park_;
    std::optional<detail::Timer> timer_;
};

inline SleepAwaiter sleep(std::chrono::milliseconds delay) {
    return SleepAwaiter(delay);
}

// Catches `signals` (e.g. SIGINT, SIGTERM) from the moment it is made, like
// asyncio's loop.add_signal_handler: a signal becomes one more event of the
// loop. One that arrives before anybody awaits wait() is kept, not lost to
// the default action (which would kill the process) -- so a server makes its
// SignalWatch *before* it tells the world it is listening.
class SignalWatch {
  public:
    explicit SignalWatch(const std::vector<int>& signals);
    ~SignalWatch();
    SignalWatch(const SignalWatch&) = delete;
    SignalWatch& operator=(const SignalWatch&) = delete;

    // The first signal received (at once if it came already). Cancellable.
    Task<int> wait();

  private:
    std::vector<detail::Handle*> handles_;  // heap handles: never in a frame
    int received_ = 0;
    std::vector<detail::Waiter> waiters_;
};

// Waits until one of `signals` arrives and returns it. Cancellable.
Task<int> wait_for_signal(std::vector<int> signals);

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

namespace detail {
// Waits for every child; the first to fail cancels the others. Returns that
// first error (CancelledError if a child was cancelled from outside), or null.
template <typename T>
Task<std::exception_ptr> wait_all(std::vector<JoinHandle<T>>& children) {
    std::size_t remaining = children.size();
    std::exception_ptr first_error;
    Event all_done;
    if (remaining == 0) all_done.set();
    for (auto& child : children) {
        child.on_done([&, c = &child] {
            if (std::exception_ptr e = c->exception(); e && !first_error) {
                first_error = e;
                for (auto& other : children)
                    other.cancel();
            }
            if (--remaining == 0) all_done.set();
        });
    }
    bool cancelled = false;
    try {
        co_await all_done.wait();
    } catch (const CancelledError&) {
        cancelled = true;  // (no co_await inside a catch block)
    }
    if (cancelled) {
        for (auto& child : children)
            child.cancel();
        co_await all_done.wait();  // no child is left running on its own
        throw CancelledError();
    }
    co_return first_error;
}
}  // namespace detail

// Runs all tasks concurrently and returns their results in order. The first
// one to fail cancels the others; once they have all finished, gather
// rethrows that first error.
template <typename T>
Task<std::vector<T>> gather(std::vector<Task<T>> tasks) {
    std::vector<JoinHandle<T>> children;
    for (auto& task : tasks)
        children.push_back(spawn(std::move(task)));
    if (std::exception_ptr error = co_await detail::wait_all(children)) {
        std::rethrow_exception(error);
    }
    std::vector<T> results;
    for (auto& child : children)
        results.push_back(child.result());
    co_return results;
}

inline Task<void> gather(std::vector<Task<void>> tasks) {
    std::vector<JoinHandle<void>> children;
    for (auto& task : tasks)
        children.push_back(spawn(std::move(task)));
    if (std::exception_ptr error = co_await detail::wait_all(children)) {
        std::rethrow_exception(error);
    }
}

// Runs `main` on a fresh loop until it finishes; then cancels tasks still
// running, waits for them, closes every handle left open, and checks that
// uv_loop_close succeeds. Rethrows main's exception.
template <typename T>
T run(Task<T> main);

namespace detail {
void init_loop();
void run_loop_until(const std::function<bool()>& done);
void cancel_leftovers();
void close_loop();
}  // namespace detail

template <typename T>
T run(Task<T> main) {
    detail::init_loop();
    JoinHandle<T> handle = spawn(std::move(main));
    detail::run_loop_until([&] { return handle.done(); });
    detail::cancel_leftovers();
    detail::close_loop();
    return handle.result();
}

}  // namespace coro
