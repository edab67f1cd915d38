// coro/task.hpp -- Task<T>, the coroutine type, like an asyncio coroutine object.
//
//   Task<int> answer() { co_return 42; }
//   Task<void> main_task() { int x = co_await answer(); }
//
// - Lazy: calling answer() makes the coroutine frame but runs nothing; it runs
//   when awaited, or handed to spawn() (runtime.hpp).
// - Move-only and [[nodiscard]]: a Task nobody awaits never runs, which is
//   almost always a bug.
// - An exception thrown inside propagates to whoever awaits it.
//
// How a child starts (Lewis Baker's symmetric-transfer pattern, and why ours
// resumes the child inside await_suspend instead of returning its handle: g++
// 12 makes no tail call at -O0): 04_coroutines/README.md, "Compiler traps".
#pragma once

#include <coroutine>
#include <stdexcept>
#include <utility>

#include "detail/promise.hpp"

namespace coro {

// Thrown at the await where a task is suspended when it is cancelled, like
// asyncio.CancelledError. Catch it to clean up, then let it propagate.
struct CancelledError : std::runtime_error {
    CancelledError() : std::runtime_error("task cancelled") {}
};

template <typename T = void>
class [[nodiscard]] Task {
  public:
    using promise_type = detail::Promise<T>;
    using value_type = T;

    Task() = default;
    explicit Task(std::coroutine_handle<promise_type> h) : handle_(h) {}
    Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Task& operator=(Task other) noexcept {
        std::swap(handle_, other.handle_);
        return *this;
    }
    ~Task() {
        if (handle_) handle_.destroy();
    }
    bool valid() const { return bool(handle_); }

    struct Awaiter {
        std::coroutine_handle<promise_type> child;

        bool await_ready() const noexcept { return !child || child.done(); }
        // ANCHOR: inline-start
        bool await_suspend(std::coroutine_handle<> parent) {
            promise_type& p = child.promise();
            p.continuation = parent;
            p.started_inline = true;
            child.resume();  // runs until the child first suspends, or to its end
            p.started_inline = false;
            return !p.finished;  // false: it finished already, the parent goes on
        }
        // ANCHOR_END: inline-start
        T await_resume() { return child.promise().result(); }
    };
    Awaiter operator co_await() const noexcept { return Awaiter{handle_}; }

  private:
    std::coroutine_handle<promise_type> handle_;
};

template <typename T>
Task<T> detail::Promise<T>::get_return_object() noexcept {
    return Task<T>{std::coroutine_handle<Promise>::from_promise(*this)};
}
inline Task<void> detail::Promise<void>::get_return_object() noexcept {
    return Task<void>{std::coroutine_handle<Promise>::from_promise(*this)};
}

}  // namespace coro
