// coro/task.hpp -- tasks: coroutines that run alongside each other.
//
//   Task<int> t = create_task(answer());  // asyncio.create_task: runs from the
//                                         // loop's next turn, on its own
//   int x = co_await t;                   // its result, or its exception
//   t.cancel();                           // CancelledError at its await
//
//   TaskGroup        asyncio.TaskGroup: tasks with one owner, who waits for all
//   gather(coros)    asyncio.gather: all results in order; the first error
//                    cancels the others
//
// Cancellation works as in asyncio: cancel() makes the await at which the task
// is suspended throw CancelledError. Frames are never destroyed mid-operation;
// the task unwinds through its own code, and may catch it to clean up.
//
// Reading path, step 4 (README.md): a task, and how it ends.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "coroutine.hpp"
#include "wait.hpp"

namespace coro {

namespace detail {

void track(TaskBase* task);  // run() cancels the tasks still running at its end
void untrack(TaskBase* task);
void cancel_group(const GroupState* group);                // each of its tasks still running
void report_unretrieved(const std::exception_ptr& error);  // on stderr
bool is_cancellation(const std::exception_ptr& error);

// A task's state, shared by the Task handles and the running coroutine.
template <typename T>
struct TaskState final : TaskBase {
    typename Coroutine<T>::Handle coroutine;  // its frame, until it ends
    Result<T> result;
    bool retrieved = false, cancelled = false;
    WaitList awaiters;
    std::vector<std::function<void()>> done_callbacks;
    std::shared_ptr<TaskState> self;  // kept alive while it runs

    ~TaskState() override {
        if (result.exception() && !retrieved) report_unretrieved(result.exception());
    }
    // ANCHOR: task-ended
    // The coroutine has ended (its final suspend point calls this).
    static void ended(void* state) {
        auto* s = static_cast<TaskState*>(state);
        s->result = std::move(s->coroutine.promise().result);
        std::exchange(s->coroutine, {}).destroy();  // its frame goes now
        s->finish();
    }
    void abandon() override {                    // see TaskBase
        std::exchange(coroutine, {}).destroy();  // its destructors run
        result.set_exception(std::make_exception_ptr(CancelledError()));
        finish();
    }
    void finish() {
        done = true;
        cancelled = is_cancellation(result.exception());
        untrack(this);
        if (group && --group->running == 0) group->waiters.wake_all();
        group.reset();
        awaiters.wake_all();
        for (auto& callback : std::exchange(done_callbacks, {}))
            callback();
        self.reset();  // may free us: nothing after this
    }
    // ANCHOR_END: task-ended
};

}  // namespace detail

// A running coroutine, like asyncio.Task. A handle: copies share the task, and
// dropping them all does not stop it.
template <typename T = void>
class Task {
  public:
    Task() = default;

    bool done() const { return s_->done; }
    void cancel() { s_->request_cancel(); }
    bool cancelled() const { return s_->cancelled; }  // it ended with CancelledError
    // The exception it ended with, if any (it counts as retrieved).
    std::exception_ptr exception() const {
        s_->retrieved = true;
        return s_->result.exception();
    }
    T result() const {  // of a finished task; rethrows (a value is taken once)
        s_->retrieved = true;
        return s_->result.take();
    }
    // Runs when the task ends (at once if it has).
    void add_done_callback(std::function<void()> callback) const {
        if (s_->done) return callback();
        s_->done_callbacks.push_back(std::move(callback));
    }

    // co_await task: its result or exception. A cancel of the awaiting task
    // passes on to this one (as in asyncio), and the await goes on until it
    // has ended: no task is abandoned half-way.
    struct Awaiter : WaitList::Waiter {
        std::shared_ptr<detail::TaskState<T>> s;
        explicit Awaiter(std::shared_ptr<detail::TaskState<T>> state)
            : Waiter(state->awaiters, state->done), s(std::move(state)) {}
        bool await_suspend(std::coroutine_handle<> h) {
            if (detail::TaskBase* me = detail::current_task(); me && me->take_cancel())
                s->request_cancel();
            return Waiter::await_suspend(h);
        }
        T await_resume() {
            Waiter::await_resume();
            s->retrieved = true;
            return s->result.take();
        }
        void interrupt() override {
            if (linked()) return s->request_cancel();
            Waiter::interrupt();  // woken already: the cancel is for the next await
        }
    };
    Awaiter operator co_await() const { return Awaiter(s_); }

  private:
    template <typename U>
    friend Task<U> create_task(Coroutine<U> coroutine);
    friend class TaskGroup;
    explicit Task(std::shared_ptr<detail::TaskState<T>> s) : s_(std::move(s)) {}
    std::shared_ptr<detail::TaskState<T>> s_;
};

// ANCHOR: create-task
// Runs `coroutine` as a task, from the loop's next turn. Only inside run().
template <typename T>
Task<T> create_task(Coroutine<T> coroutine) {
    auto s = std::make_shared<detail::TaskState<T>>();
    detail::track(s.get());  // (outside run(): a clear error, before anything else)
    s->coroutine = coroutine.release();
    s->coroutine.promise().on_end = &detail::TaskState<T>::ended;
    s->coroutine.promise().task = s.get();
    s->self = s;
    detail::schedule(s->coroutine, s.get());
    return Task<T>(std::move(s));
}
// ANCHOR_END: create-task

namespace detail {
template <typename F>
auto call_kept(std::shared_ptr<F> callable) -> std::invoke_result_t<F&> {
    co_return co_await (*callable)();  // `callable` stays alive until this ends
}
}  // namespace detail

// The same from a callable returning a coroutine. A coroutine lambda's
// captures live in the lambda, not in its frame: the task keeps it alive.
template <typename F>
requires std::is_invocable_v<F&>
auto create_task(F&& callable) {
    return create_task(
        detail::call_kept(std::make_shared<std::decay_t<F>>(std::forward<F>(callable))));
}

// Structured concurrency, as in asyncio 3.11: tasks with one owner, who waits
// for them all (co_await group.wait()) before going on, so no task outlives
// the code that started it; cancel() cancels those still running. Unlike
// asyncio's, one task's exception does not cancel the others (a server's
// connections are independent): it is reported, like any exception nobody
// retrieved. A handle: copies share the same tasks.
class TaskGroup {
  public:
    template <typename C>  // a Coroutine, or a callable that returns one
    auto create_task(C&& coroutine) {
        auto task = coro::create_task(std::forward<C>(coroutine));
        task.s_->group = s_;  // it counts itself out when it ends (TaskState::finish)
        ++s_->running;
        return task;
    }
    std::size_t size() const { return s_->running; }  // tasks not finished yet
    void cancel() { detail::cancel_group(s_.get()); }
    // Returns once no task is left, those created meanwhile included. Cancellable.
    Coroutine<void> wait() {
        auto state = s_;  // the group may go while we wait
        while (state->running > 0)
            co_await state->waiters.wait();
    }

  private:
    std::shared_ptr<detail::GroupState> s_ = std::make_shared<detail::GroupState>();
};

// Runs the coroutines as tasks; their results, in order (a vector, or nothing
// for void). The first to fail cancels the others, and once all have ended
// gather rethrows its error. A cancel of gather passes on to the child it
// awaits (see Task::Awaiter), and through that child's error to the others.
template <typename T>
auto gather(std::vector<Coroutine<T>> coroutines)
    -> Coroutine<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> {
    std::vector<Task<T>> children;
    for (auto& coroutine : coroutines)
        children.push_back(create_task(std::move(coroutine)));
    std::exception_ptr first_error;
    for (auto& child : children) {
        child.add_done_callback([&children, &first_error, c = child] {
            if (std::exception_ptr e = c.exception(); e && !first_error) {
                first_error = e;
                for (auto& other : children)
                    other.cancel();
            }
        });
    }
    std::conditional_t<std::is_void_v<T>, bool, std::vector<T>> results{};
    for (auto& child : children) {
        try {
            if constexpr (std::is_void_v<T>) {
                co_await child;
            } else {
                results.push_back(co_await child);
            }
        } catch (...) {
            // (its done callback has seen it)
        }
    }
    if (first_error) std::rethrow_exception(first_error);
    if constexpr (!std::is_void_v<T>) co_return results;
}

}  // namespace coro
