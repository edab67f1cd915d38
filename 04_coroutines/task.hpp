// Task<T>: the coroutine type of the runtime, like an asyncio coroutine object.
//
//   Task<int> answer() { co_return 42; }
//   Task<void> main_task() { int x = co_await answer(); }
//
// - Lazy: calling answer() creates the coroutine frame but runs nothing. It
//   runs when awaited (co_await) or handed to spawn().
// - Move-only and [[nodiscard]]: a Task nobody awaits never runs, which is
//   almost always a bug.
// - Exceptions thrown inside propagate to whoever awaits it.
//
// How control moves, and the one compiler trap it is built around:
// the natural way to start an awaited child is "symmetric transfer" -- return
// the child's handle from await_suspend, and at the end return the parent's
// handle from final_suspend -- which only stays flat on the stack if the
// compiler turns those transfers into tail calls. g++ 12 does not at -O0 or
// under sanitizers, so a loop of a million awaits of children that finish at
// once would overflow the stack. So: a child is started with a plain resume()
// from await_suspend; if it finishes before that returns (it never really
// suspended), await_suspend returns false and the parent simply continues.
// Only a child that did suspend (it waits for I/O, a timer...) is later
// resumed from an event-loop callback, on a fresh stack, and then
// final_suspend transfers to the parent symmetrically: one level, not a
// million.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <utility>
#include <variant>

namespace coro {

// Thrown at the await where a task is suspended when it is cancelled, like
// asyncio.CancelledError. Catch it to clean up, then let it propagate.
struct CancelledError : std::runtime_error {
    CancelledError() : std::runtime_error("task cancelled") {}
};

template <typename T>
class Task;

namespace detail {

struct PromiseBase {
    std::coroutine_handle<> continuation;  // who awaits us
    bool started_inline = false;           // the awaiter is still inside await_suspend
    bool finished = false;
    std::exception_ptr error;

    std::suspend_always initial_suspend() noexcept { return {}; }  // lazy

    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        template <typename Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
            PromiseBase& p = self.promise();
            p.finished = true;
            // Finished while the parent is still in await_suspend: return to
            // it (it sees `finished` and continues without suspending).
            if (p.started_inline || !p.continuation) return std::noop_coroutine();
            return p.continuation;  // resumed from the loop: transfer to the parent
        }
        void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <typename T>
struct Promise : PromiseBase {
    std::optional<T> value;
    Task<T> get_return_object() noexcept;
    template <typename U>
    void return_value(U&& v) {
        value.emplace(std::forward<U>(v));
    }
};

template <>
struct Promise<void> : PromiseBase {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
};

}  // namespace detail

template <typename T = void>
class [[nodiscard]] Task {
  public:
    using promise_type = detail::Promise<T>;
    using value_type = T;

    Task() = default;
    explicit Task(std::coroutine_handle<promise_type> h) : handle_(h) {}
    Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Task& operator=(Task&& other) noexcept {
        if (this != &other) {
            if (handle_) handle_.destroy();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
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
        T await_resume() {
            promise_type& p = child.promise();
            if (p.error) std::rethrow_exception(p.error);
            if constexpr (!std::is_void_v<T>) return std::move(*p.value);
        }
    };
    Awaiter operator co_await() && noexcept { return Awaiter{handle_}; }
    Awaiter operator co_await() & noexcept { return Awaiter{handle_}; }

  private:
    std::coroutine_handle<promise_type> handle_;
};

namespace detail {
template <typename T>
Task<T> Promise<T>::get_return_object() noexcept {
    return Task<T>{std::coroutine_handle<Promise<T>>::from_promise(*this)};
}
inline Task<void> Promise<void>::get_return_object() noexcept {
    return Task<void>{std::coroutine_handle<Promise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace coro
