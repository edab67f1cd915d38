// coro/wait.hpp -- how a task waits: WaitList, the building block of every
// wait in coro/; Future, a result some callback will set; Event.
//
//   while (!ready) co_await list.wait();  // a task waits...
//   ready = true; list.wake_all();        // ...and whoever makes it ready wakes it
//
// The one rule: waking never resumes anybody. wake_all(), set_result() and
// set() put the waiting tasks on the loop's ready queue (those whose woken()
// accepts: see Waiter), and the loop resumes them on its next turn -- so code
// that wakes (a libuv callback, say) goes on to its end first, with no task
// run under it.
//
// Every wait is cancellable: Task::cancel() makes it throw CancelledError.
//
// Reading path, step 2 (README.md): an awaiter, and what a cancel does to it.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <utility>

#include "coroutine.hpp"

namespace coro {

namespace detail {
struct TaskBase;
}

// Tasks waiting for one thing: bytes, a drain, an event... The list runs
// through the awaiters, which live in the waiting frames: waiting allocates
// nothing, and a cancelled waiter leaves in O(1).
class WaitList {
  public:
    class Waiter;
    WaitList() = default;
    WaitList(const WaitList&) = delete;
    WaitList& operator=(const WaitList&) = delete;

    Waiter wait();  // until the next wake_all()
    // The same, with no wait at all if `ready`: what we would wait for is
    // there already, or can never come.
    Waiter wait_unless(bool ready);
    void wake_all();  // each waiter (that accepts: woken()) to the ready queue, in order

  private:
    Waiter *head_ = nullptr, *tail_ = nullptr;
};

// The awaiter: on the list until woken -- or until cancelled, then off the
// list, and CancelledError. (g++ 12 may destroy a brace-initialised temporary
// in a co_await expression twice, so waiters come from functions, wait(),
// never as `co_await Waiter{...}`: README.md, "Compiler traps".)
class WaitList::Waiter {
  public:
    Waiter(WaitList& list, bool ready) : list_(&list), ready_(ready) {}
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    virtual ~Waiter();  // a frame destroyed while it waits leaves the list

    bool await_ready() const noexcept { return ready_; }
    bool await_suspend(std::coroutine_handle<> h);  // false: a cancel came first
    void await_resume();                            // CancelledError, if cancelled
    // What a cancel does to this wait: here, leave the list and throw.
    // Overridden by a wait that must outlive the cancel (awaiting a Task).
    virtual void interrupt();
    // What a wake_all() does to this wait: here, accept it (the task goes to
    // the ready queue). A wait that checks a condition of its own may say no,
    // and stays on the list. It runs inside whatever woke it (a libuv
    // callback, or a task closing a stream): it may look and consume, never
    // resume, never throw (frame_reader.hpp's FrameReader::Next).
    virtual bool woken() noexcept { return true; }

  protected:
    bool linked() const { return linked_; }

  private:
    friend class WaitList;
    void link();
    void unlink();
    WaitList* list_;
    bool ready_, linked_ = false, cancelled_ = false;
    Waiter *prev_ = nullptr, *next_ = nullptr;
    std::coroutine_handle<> me_;
    detail::TaskBase* task_ = nullptr;
};

namespace detail {

// What every task has, whatever its result: the cancel asked of it, and the
// wait it is suspended in, which a cancel interrupts.
// A TaskGroup's tasks: how many still run, and who waits for none to.
struct GroupState {
    std::size_t running = 0;
    WaitList waiters;
};

struct TaskBase {
    bool cancel_requested = false, done = false;
    WaitList::Waiter* suspended_in = nullptr;
    // run()'s list of the tasks still running goes through them: no node to
    // allocate, and O(1) in and out.
    TaskBase *prev_running = nullptr, *next_running = nullptr;
    std::shared_ptr<GroupState> group;  // the TaskGroup it belongs to, if any
    std::uint64_t number = 0;           // 1, 2, 3... in the order of creation

    virtual ~TaskBase() = default;
    void request_cancel();  // interrupts its wait; without one, its next wait throws
    // One cancel, one CancelledError (as in asyncio): consumes the one asked.
    bool take_cancel() { return std::exchange(cancel_requested, false); }
    // run(): frees a task that nothing can wake any more (it ends cancelled).
    virtual void abandon() = 0;
};

TaskBase* current_task();  // the task whose code runs now (null outside one)
// The ready queue: `h` is resumed on the loop's next turn, as part of `task`.
void schedule(std::coroutine_handle<> h, TaskBase* task);

}  // namespace detail

inline WaitList::Waiter WaitList::wait() {
    return Waiter(*this, false);
}
inline WaitList::Waiter WaitList::wait_unless(bool ready) {
    return Waiter(*this, ready);
}

// A result that is not there yet: a libuv callback (or any code) sets it, and
// the tasks that await it get it. Like asyncio.Future; copies share one
// result. The way to wrap a libuv request as an awaitable: coro/uv.hpp.
template <typename T = void>
class Future {
    struct State {
        Result<T> result;
        WaitList waiters;
    };

  public:
    bool done() const { return s_->result.ready(); }
    // Sets the result and wakes the awaiters (on the loop's next turn).
    // Only the first result counts.
    template <typename... U>
    void set_result(U&&... value) {
        if (done()) return;
        s_->result.set_value(std::forward<U>(value)...);
        s_->waiters.wake_all();
    }
    void set_exception(std::exception_ptr error) {
        if (done()) return;
        s_->result.set_exception(std::move(error));
        s_->waiters.wake_all();
    }
    T result() { return s_->result.take(); }  // of a done future: taken once

    struct Awaiter : WaitList::Waiter {
        std::shared_ptr<State> s;
        explicit Awaiter(std::shared_ptr<State> state)
            : Waiter(state->waiters, state->result.ready()), s(std::move(state)) {}
        T await_resume() {
            Waiter::await_resume();
            return s->result.take();
        }
    };
    Awaiter operator co_await() const { return Awaiter(s_); }  // Cancellable

  private:
    std::shared_ptr<State> s_ = std::make_shared<State>();
};

// asyncio.Event: set() wakes every task in wait(), and later waits return at
// once.
class Event {
  public:
    void set() {
        set_ = true;
        waiters_.wake_all();
    }
    Coroutine<void> wait() {  // Cancellable
        while (!set_)
            co_await waiters_.wait();
    }

  private:
    bool set_ = false;
    WaitList waiters_;
};

}  // namespace coro
