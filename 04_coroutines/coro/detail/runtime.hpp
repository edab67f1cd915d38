// Internals of coro/runtime.hpp: cancellation, wait lists, the ready queue,
// libuv handles on the heap, and what a spawned task leaves behind.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "../task.hpp"

namespace coro::detail {

class Park;

// The unit of cancellation: one per spawned task (run's main included).
struct TaskRoot {
    bool cancel_requested = false, finished = false;
    // The cancellable awaiter the task is suspended in: it registers itself
    // here when it suspends and unregisters when it resumes.
    Park* hook = nullptr;
    // The coroutine that runs the task (see drive): run() destroys it if the
    // task waits for something that can no longer happen.
    std::coroutine_handle<> driver;

    void request_cancel();  // interrupts that await; without one, the next one throws
    // One cancel, one CancelledError (as in asyncio): consumes a pending one.
    bool take_cancel() { return std::exchange(cancel_requested, false); }
};

TaskRoot* current_root();  // the task whose code runs now
uv_loop_t* loop();
void resume(std::coroutine_handle<> h, TaskRoot* root);    // now, on this stack
void schedule(std::coroutine_handle<> h, TaskRoot* root);  // from the ready queue

// Coroutines waiting for something: bytes, a drain, an event... The list runs
// through the awaiters, which live in the waiting frames: waiting allocates
// nothing, and a cancelled waiter leaves in O(1).
class WaitList {
  public:
    WaitList() = default;
    WaitList(const WaitList&) = delete;
    WaitList& operator=(const WaitList&) = delete;
    void wake_all();  // each to the ready queue, in order

  private:
    friend class Park;
    Park *head_ = nullptr, *tail_ = nullptr;
};

// The awaiter behind most waits: on a WaitList until woken, or until
// cancelled -- then off the list, and CancelledError. (g++ 12 may destroy a
// brace-initialised temporary in a co_await expression twice, so awaiters are
// made by functions, park(list), never as `co_await Park{list}`.)
class Park {
  public:
    explicit Park(WaitList& list) : list_(&list) {}
    Park(const Park&) = delete;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h);  // false: a cancel came first
    void await_resume() {
        if (root_ && root_->hook == this) root_->hook = nullptr;
        if (cancelled_) throw CancelledError();
    }
    // What cancelling this wait means: here, leave the list and throw. Woken
    // already (on the ready queue), the cancel is for the task's next await.
    virtual void interrupt();

  protected:
    // A frame may be destroyed while it waits here (run() frees a task that
    // nothing can wake): leave the list then, or a later wake_all would
    // touch this freed awaiter and resume a destroyed frame.
    ~Park() {
        if (linked_) unlink();
        if (root_ && root_->hook == this) root_->hook = nullptr;
    }
    std::coroutine_handle<> me_;
    TaskRoot* root_ = nullptr;
    bool cancelled_ = false, linked_ = false;

  private:
    friend class WaitList;
    void unlink();
    WaitList* list_;
    Park *prev_ = nullptr, *next_ = nullptr;
};
struct Parked final : Park {  // (a Park that is not part of another awaiter)
    Parked(WaitList& list, bool ready) : Park(list), ready_(ready) {}
    bool await_ready() const noexcept { return ready_; }  // no wait at all

  private:
    bool ready_;
};
// `ready`: what we would wait for is there already (or can never come).
inline Parked park(WaitList& list, bool ready = false) {
    return Parked(list, ready);
}

// A libuv handle on the heap: close() asks libuv to close it, and the memory
// goes in the close callback, never earlier -- a coroutine frame may end
// while libuv still holds it. run() closes any left open at the end.
struct Handle {
    uv_any_handle uv{};               // uv.handle.data points back here
    void* owner = nullptr;            // the object its callbacks are for
    std::function<void()> on_closed;  // optional, runs in the close callback

    Handle() { uv.handle.data = this; }
    uv_stream_t* stream() { return &uv.stream; }
    void close() {
        if (!uv_is_closing(&uv.handle)) uv_close(&uv.handle, closed);
    }
    template <typename T>
    static T* owner_of(void* uv_handle) {  // in callbacks: the object they are for
        return static_cast<T*>(
            static_cast<Handle*>(static_cast<uv_handle_t*>(uv_handle)->data)->owner);
    }

  private:
    ~Handle() = default;                 // only closed() deletes
    static void closed(uv_handle_t* h);  // runs on_closed, then deletes
};

// A one-shot timer that calls `fire` unless stopped (or destroyed) first.
class Timer {
  public:
    Timer(std::chrono::milliseconds delay, std::function<void()> fire);
    ~Timer() { handle_->close(); }  // a closing timer never fires
    Timer(const Timer&) = delete;

  private:
    Handle* handle_;
    std::function<void()> fire_;
};

void report_unretrieved(const std::exception_ptr& error);  // on stderr
void track(TaskRoot* root);  // run() cancels what is still running at the end
void untrack(TaskRoot* root);

// What a spawned task leaves behind: its result or error, and who waits.
template <typename T>
struct SpawnState : TaskRoot {
    std::shared_ptr<void> callable;  // keeps a lambda's captures alive
    Task<T> task;
    bool done = false, cancelled = false, retrieved = false;
    std::conditional_t<std::is_void_v<T>, bool, std::optional<T>> value{};
    std::exception_ptr error;
    WaitList waiters;
    std::vector<std::function<void()>> done_callbacks;

    ~SpawnState() {
        if (error && !retrieved) report_unretrieved(error);
    }
    void finish() {  // it has ended: tell whoever waits
        task = {};   // (frees the task's frame now, not when the last handle goes)
        done = finished = true;
        untrack(this);
        waiters.wake_all();
        for (auto& callback : std::exchange(done_callbacks, {}))
            callback();
    }
    T result() {
        retrieved = true;
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<T>) return std::move(*value);
    }
};

// co_await on a JoinHandle. A cancel passes on to the awaited task (as in
// asyncio), and we go on waiting for it: no task is abandoned half-way.
template <typename T>
class Join final : public Park {
  public:
    explicit Join(std::shared_ptr<SpawnState<T>> s) : Park(s->waiters), s_(std::move(s)) {}
    bool await_ready() const noexcept { return s_->done; }
    void await_suspend(std::coroutine_handle<> h) {
        if (TaskRoot* root = current_root(); root && root->take_cancel()) s_->request_cancel();
        Park::await_suspend(h);
    }
    T await_resume() {
        Park::await_resume();
        return s_->result();
    }
    void interrupt() override {
        if (!linked_) return Park::interrupt();
        s_->request_cancel();
    }

  private:
    std::shared_ptr<SpawnState<T>> s_;
};

// The coroutine that runs a spawned task to its end and records how it
// ended. Its frame frees itself at the end (final_suspend does not suspend).
struct Driver {
    struct promise_type {
        Driver get_return_object() { return {Handle::from_promise(*this)}; }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    using Handle = std::coroutine_handle<promise_type>;
    Handle handle;
};

template <typename T>
Driver drive(std::shared_ptr<SpawnState<T>> s) {
    // Destroyed before its end (by run(), for a task that nothing can wake
    // any more): the task ends as cancelled all the same, so that whoever
    // holds its JoinHandle or waits for it is told, and its frame is freed.
    struct Unfinished {
        SpawnState<T>& s;
        ~Unfinished() {
            if (s.done) return;
            s.error = std::make_exception_ptr(CancelledError());
            s.cancelled = true;
            s.finish();
        }
    };
    Unfinished guard{*s};
    try {
        if constexpr (std::is_void_v<T>) {
            co_await s->task;
        } else {
            s->value = co_await s->task;
        }
    } catch (const CancelledError&) {
        s->error = std::current_exception();
        s->cancelled = true;
    } catch (...) {
        s->error = std::current_exception();
    }
    s->finish();
}

template <typename T>
using Gathered = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;  // gather's result

template <typename T>
std::shared_ptr<SpawnState<T>> start(std::shared_ptr<SpawnState<T>> s) {
    // Outside coro::run there is no loop to run it on: a clear error now,
    // before anything is registered, not a crash inside libuv.
    (void)loop();
    track(s.get());
    s->driver = drive(s).handle;
    schedule(s->driver, s.get());
    return s;
}

}  // namespace coro::detail
