// Internals of Task<T> (coro/task.hpp): the promise, where a coroutine keeps
// who awaits it and how it ended.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

namespace coro {

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
        template <typename P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
            PromiseBase& p = self.promise();
            p.finished = true;
            // Finished while the parent is still in await_suspend: return to
            // it (it sees `finished` and goes on without suspending).
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
    T result() {
        if (error) std::rethrow_exception(error);
        return std::move(*value);
    }
};

template <>
struct Promise<void> : PromiseBase {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void result() const {
        if (error) std::rethrow_exception(error);
    }
};

}  // namespace detail
}  // namespace coro
