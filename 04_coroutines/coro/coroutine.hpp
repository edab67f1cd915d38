// coro/coroutine.hpp -- Coroutine<T>: what a coroutine function returns, like
// the coroutine object Python's `async def` returns.
//
//   Coroutine<int> answer() { co_return 42; }
//   Coroutine<void> main_task() { int x = co_await answer(); }
//
// - Lazy: calling answer() makes its frame and runs nothing. It runs when
//   awaited, or when handed to create_task() (task.hpp), which runs it
//   alongside the others, as a Task.
// - Move-only and [[nodiscard]]: a coroutine nobody awaits never runs, which
//   is almost always a bug.
// - An exception thrown inside propagates to whoever awaits it.
//
// Reading path, step 1 (README.md): the promise, where a coroutine keeps who
// awaits it and how it ended.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

namespace coro {

// Thrown at the await where a task is suspended when it is cancelled, like
// asyncio.CancelledError. Catch it to clean up, then let it propagate.
struct CancelledError : std::runtime_error {
    CancelledError() : std::runtime_error("task cancelled") {}
};

// A value, or the exception that stands in for it: how a coroutine, a Task or
// a Future ended. (Result<void> holds no value, only whether it is set.)
template <typename T>
class Result {
  public:
    bool ready() const { return value_.has_value() || error_ != nullptr; }
    template <typename... U>
    void set_value(U&&... value) {
        value_.emplace(std::forward<U>(value)...);
    }
    void set_exception(std::exception_ptr error) { error_ = std::move(error); }
    const std::exception_ptr& exception() const { return error_; }
    // The value, moved out (so it is taken once), or the exception, rethrown.
    T take() {
        if (error_) std::rethrow_exception(error_);
        if constexpr (!std::is_void_v<T>) return std::move(*value_);
    }

  private:
    std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>> value_;
    std::exception_ptr error_;
};

template <typename T = void>
class Coroutine;

namespace detail {

struct PromiseBase {
    std::coroutine_handle<> continuation;  // who awaits us
    bool started_inline = false;           // the awaiter is still inside await_suspend
    // Set by create_task: what to call once the coroutine has ended, in place
    // of resuming an awaiter (a task has none: it tells its Task instead).
    void (*on_end)(void* task) = nullptr;
    void* task = nullptr;

    // ANCHOR: final-suspend
    std::suspend_always initial_suspend() noexcept { return {}; }  // lazy
    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        template <typename P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
            PromiseBase& p = self.promise();
            // Finished while the parent is still in await_suspend: return to
            // it (it sees done() and goes on without suspending).
            if (p.started_inline) return std::noop_coroutine();
            if (p.continuation) return p.continuation;  // transfer to the parent
            if (p.on_end) p.on_end(p.task);             // (may destroy this frame)
            return std::noop_coroutine();
        }
        void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    // ANCHOR_END: final-suspend
};

template <typename T>
struct Returns {  // co_return value;
    Result<T> result;
    template <typename U>
    void return_value(U&& value) {
        result.set_value(std::forward<U>(value));
    }
};
template <>
struct Returns<void> {  // co_return;
    Result<void> result;
    void return_void() { result.set_value(); }
};

template <typename T>
struct Promise : PromiseBase, Returns<T> {
    Coroutine<T> get_return_object() noexcept;
    void unhandled_exception() noexcept { this->result.set_exception(std::current_exception()); }
};

}  // namespace detail

template <typename T>
class [[nodiscard]] Coroutine {
  public:
    using promise_type = detail::Promise<T>;
    using value_type = T;
    using Handle = std::coroutine_handle<promise_type>;

    Coroutine() = default;
    explicit Coroutine(Handle h) : handle_(h) {}
    Coroutine(Coroutine&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Coroutine& operator=(Coroutine other) noexcept {
        std::swap(handle_, other.handle_);
        return *this;
    }
    ~Coroutine() {
        if (handle_) handle_.destroy();
    }

    // co_await runs the child on this stack until it first suspends. Lewis
    // Baker's symmetric transfer would return the child's handle instead, but
    // g++ 12 makes no tail call at -O0: README.md, "Compiler traps".
    struct Awaiter {
        Handle child;

        bool await_ready() const noexcept { return child.done(); }
        // ANCHOR: inline-start
        bool await_suspend(std::coroutine_handle<> parent) {
            promise_type& p = child.promise();
            p.continuation = parent;
            p.started_inline = true;
            child.resume();  // runs until the child first suspends, or to its end
            p.started_inline = false;
            return !child.done();  // false: it finished already, the parent goes on
        }
        // ANCHOR_END: inline-start
        T await_resume() { return child.promise().result.take(); }
    };
    Awaiter operator co_await() const noexcept { return Awaiter{handle_}; }

    // For create_task, which runs it as a task of its own.
    Handle release() { return std::exchange(handle_, {}); }

  private:
    Handle handle_;
};

template <typename T>
Coroutine<T> detail::Promise<T>::get_return_object() noexcept {
    return Coroutine<T>{Coroutine<T>::Handle::from_promise(*this)};
}

}  // namespace coro
