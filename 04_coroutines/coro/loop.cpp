// The loop: the ready queue, waits and cancels, run(), timers, signals, the
// thread pool.
#include <string>

#include <fmt/format.h>

#include "loop.hpp"
#include "uv.hpp"

namespace coro {
namespace {

struct Ready {
    std::coroutine_handle<> handle;
    detail::TaskBase* task;
};

// The runtime's state: one loop per thread, as in asyncio.
struct Runtime {
    uv_loop_t loop;
    bool open = false;
    detail::TaskBase* current = nullptr;
    std::vector<Ready> ready;             // to resume on the loop's next turn
    std::vector<Ready> now;               // the turn being run (kept: no allocation per turn)
    detail::Handle* idle = nullptr;       // active while `ready` is not empty
    detail::TaskBase* running = nullptr;  // every task still running, linked through them
    std::uint64_t tasks_created = 0;
    LoopObserver observer;
};
thread_local Runtime runtime;

// ANCHOR: ready-queue
// The loop's idle callback: resume what is ready now. What they schedule
// waits for the next turn, so that I/O callbacks get their share of the loop.
void on_idle(uv_idle_t*) {
    runtime.now.clear();
    runtime.now.swap(runtime.ready);
    for (const Ready& r : runtime.now) {
        detail::TaskBase* saved = std::exchange(runtime.current, r.task);
        const std::uint64_t task = r.task ? r.task->number : 0;  // (it may end in its step)
        if (runtime.observer.step) runtime.observer.step(true, task);
        r.handle.resume();  // runs the task until its next suspension
        if (runtime.observer.step) runtime.observer.step(false, task);
        runtime.current = saved;
    }
    if (runtime.ready.empty()) uv_idle_stop(&runtime.idle->uv.idle);
}
// ANCHOR_END: ready-queue

}  // namespace

void observe(LoopObserver observer) {
    runtime.observer = observer;
}

uv_loop_t* uv_loop() {
    if (!runtime.open) throw std::logic_error("coro: called outside coro::run (no loop)");
    return &runtime.loop;
}

namespace detail {

TaskBase* current_task() {
    return runtime.current;
}

void schedule(std::coroutine_handle<> h, TaskBase* task) {
    runtime.ready.push_back({h, task});
    uv_idle_start(&runtime.idle->uv.idle, on_idle);
}

void track(TaskBase* task) {
    (void)uv_loop();  // outside run(): logic_error
    task->number = ++runtime.tasks_created;
    task->next_running = std::exchange(runtime.running, task);
    if (task->next_running) task->next_running->prev_running = task;
}

void untrack(TaskBase* task) {
    (task->prev_running ? task->prev_running->next_running : runtime.running) = task->next_running;
    if (task->next_running) task->next_running->prev_running = task->prev_running;
    task->prev_running = task->next_running = nullptr;
}

void cancel_group(const GroupState* group) {
    for (TaskBase* task = runtime.running; task; task = task->next_running) {
        if (task->group.get() == group) task->request_cancel();
    }
}

bool is_cancellation(const std::exception_ptr& error) {
    try {
        if (error) std::rethrow_exception(error);
    } catch (const CancelledError&) {
        return true;
    } catch (...) {
    }
    return false;
}

void report_unretrieved(const std::exception_ptr& error) {
    if (is_cancellation(error)) return;  // a cancelled task nobody awaited: nothing to say
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        fmt::print(stderr, "coro: task exception was never retrieved: {}\n", e.what());
    } catch (...) {
        fmt::print(stderr, "coro: task exception was never retrieved (not a std::exception)\n");
    }
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Waits

// ANCHOR: waiter-suspend
bool WaitList::Waiter::await_suspend(std::coroutine_handle<> h) {
    me_ = h;
    task_ = detail::current_task();
    // Every task is resumed by the loop, which says whose code runs. Nobody
    // running means a callback resumed a coroutine itself, breaking rule 2
    // (coro/uv.hpp): stop that here, loudly, not with a crash later.
    if (!task_)
        throw std::logic_error("coro: a coroutine was resumed outside the loop's ready queue");
    if (task_->take_cancel()) {
        cancelled_ = true;  // cancelled before it waited: throw at once
        return false;
    }
    link();
    task_->suspended_in = this;  // a cancel interrupts us from now on
    return true;
}
// ANCHOR_END: waiter-suspend

void WaitList::Waiter::await_resume() {
    if (task_ && task_->suspended_in == this) task_->suspended_in = nullptr;
    if (cancelled_) throw CancelledError();
}

// ANCHOR: cancel
// Task::cancel(): interrupt the wait the task is suspended in; suspended in
// none (it is on the ready queue, or running), its next wait throws.
void detail::TaskBase::request_cancel() {
    if (done) return;
    if (WaitList::Waiter* waiter = std::exchange(suspended_in, nullptr)) return waiter->interrupt();
    cancel_requested = true;
}

void WaitList::Waiter::interrupt() {
    if (!linked_) {  // woken already: the cancel is for the task's next wait
        task_->cancel_requested = true;
        return;
    }
    unlink();
    cancelled_ = true;
    detail::schedule(me_, task_);
}
// ANCHOR_END: cancel

// A frame may be destroyed while it waits here (run() frees a task that
// nothing can wake): leave the list then, or a later wake_all would resume a
// destroyed frame.
WaitList::Waiter::~Waiter() {
    if (linked_) unlink();
    if (task_ && task_->suspended_in == this) task_->suspended_in = nullptr;
}

void WaitList::Waiter::link() {
    prev_ = std::exchange(list_->tail_, this);  // at the end of the list
    (prev_ ? prev_->next_ : list_->head_) = this;
    linked_ = true;
}

void WaitList::Waiter::unlink() {
    (prev_ ? prev_->next_ : list_->head_) = next_;
    (next_ ? next_->prev_ : list_->tail_) = prev_;
    prev_ = next_ = nullptr;
    linked_ = false;
}

void WaitList::wake_all() {
    // One at a time from the front, so that the list stays whole while a
    // woken() runs; those that decline wait in `declined` (where a cancel
    // can still find them) and go back at the end.
    WaitList declined;
    while (Waiter* w = head_) {
        w->unlink();
        if (w->woken()) {
            detail::schedule(w->me_, w->task_);  // never resumed here: rule 2
        } else {
            w->list_ = &declined;
            w->link();
        }
    }
    while (Waiter* w = declined.head_) {
        w->unlink();
        w->list_ = this;
        w->link();
    }
}

// ---------------------------------------------------------------------------
// run()

namespace detail {

void open_loop() {
    if (runtime.open) throw std::logic_error("coro::run is already running");
    uv_loop_init(&runtime.loop);
    runtime.open = true;
    runtime.tasks_created = 0;  // main is task 1
    runtime.idle = new Handle;
    uv_idle_init(&runtime.loop, &runtime.idle->uv.idle);
    if (runtime.observer.wait) {
        // Just before libuv polls for I/O, and just after. Unreferenced: they
        // never keep the loop alive; close_loop closes them with the rest.
        auto* before = new Handle;
        uv_prepare_init(&runtime.loop, &before->uv.prepare);
        uv_prepare_start(&before->uv.prepare, [](uv_prepare_t*) { runtime.observer.wait(true); });
        uv_unref(&before->uv.handle);
        auto* after = new Handle;
        uv_check_init(&runtime.loop, &after->uv.check);
        uv_check_start(&after->uv.check, [](uv_check_t*) { runtime.observer.wait(false); });
        uv_unref(&after->uv.handle);
    }
}

namespace {
// Like asyncio.run: cancel every task still running, once, and wait for each
// to unwind -- its cleanup may await, and cancelling again would cut that
// short. A task that waits for what can no longer happen (nothing left to
// wake it) is freed: its frame is destroyed, its destructors run.
void finish_tasks() {
    // (A cancel only schedules: nobody leaves the list while we walk it.)
    for (TaskBase* task = runtime.running; task; task = task->next_running)
        task->request_cancel();
    while (runtime.running) {
        const bool idle = uv_run(&runtime.loop, UV_RUN_ONCE) == 0 && runtime.ready.empty();
        if (idle && runtime.running) runtime.running->abandon();
    }
}

// Close every handle left (a server nobody closed, say), so that no
// descriptor outlives the run, and leave the runtime ready for the next.
void close_loop() {
    auto close = [](uv_handle_t* h, void*) {
        // One already closing may be anybody's (its data is then not ours to
        // read); every other one left open is ours: a Handle, or a stream.
        if (!uv_is_closing(h)) static_cast<HandleOwner*>(h->data)->close_handle();
    };
    uv_walk(&runtime.loop, close, nullptr);
    uv_run(&runtime.loop, UV_RUN_DEFAULT);
    runtime.ready.clear();
    runtime.idle = nullptr;
    runtime.open = false;
    if (int rc = uv_loop_close(&runtime.loop); rc != 0)
        throw std::logic_error(fmt::format("coro::run: uv_loop_close: {}", uv_strerror(rc)));
}
}  // namespace

void run_loop(const std::function<bool()>& done) {
    std::exception_ptr error;
    try {
        while (!done()) {
            // UV_RUN_ONCE blocks until something happens. If nothing can
            // happen (no handle, no ready task), main waits forever: say so.
            if (uv_run(&runtime.loop, UV_RUN_ONCE) == 0 && !done() && runtime.ready.empty())
                throw std::logic_error("coro::run: main waits for something that cannot happen");
        }
    } catch (...) {
        error = std::current_exception();  // rethrown once wound up: a later run must work
    }
    finish_tasks();
    close_loop();
    if (error) std::rethrow_exception(error);
}

// ---------------------------------------------------------------------------
// Time, the thread pool

Timer::Timer(std::chrono::milliseconds delay, std::function<void()> fire)
    : handle_(new Handle), fire_(std::move(fire)) {
    uv_timer_init(uv_loop(), &handle_->uv.timer);
    handle_->owner = this;
    auto on_timer = [](uv_timer_t* t) { Handle::owner_of<Timer>(t)->fire_(); };
    uv_timer_start(&handle_->uv.timer, on_timer, static_cast<std::uint64_t>(delay.count()), 0);
}

Timer::~Timer() {
    handle_->close_handle();  // a closing timer never fires
}

Coroutine<void> run_in_pool(std::function<void()> work) {
    struct Job {
        uv_work_t req{};
        std::function<void()> fn;
        Future<void> finished;
    };
    auto job = std::make_unique<Job>();
    job->req.data = job.get();
    job->fn = std::move(work);
    Future<void> finished = job->finished;
    auto run = [](uv_work_t* req) { static_cast<Job*>(req->data)->fn(); };  // on a pool thread
    auto after = [](uv_work_t* req, int) {                                  // back on the loop
        std::unique_ptr<Job> done(static_cast<Job*>(req->data));
        done->finished.set_result();
    };
    if (int rc = uv_queue_work(uv_loop(), &job->req, run, after); rc != 0)
        throw std::runtime_error(std::string("uv_queue_work: ") + uv_strerror(rc));
    job.release();  // libuv's until `after`
    bool cancelled = false;
    while (!finished.done()) {
        try {
            co_await finished;
        } catch (const CancelledError&) {
            cancelled = true;  // wait for fn all the same: it uses the caller's frame
        }
    }
    if (cancelled) throw CancelledError();
}

}  // namespace detail

Coroutine<void> sleep(std::chrono::milliseconds delay) {
    WaitList woken;
    detail::Timer timer(delay, [&woken] { woken.wake_all(); });  // (a cancel stops it)
    co_await woken.wait();
}

// ---------------------------------------------------------------------------
// Signals

SignalWatch::SignalWatch(const std::vector<int>& signals) {
    auto on_signal = [](uv_signal_t* h, int number) {
        auto* watch = detail::Handle::owner_of<SignalWatch>(h);
        if (watch->received_ == 0) watch->received_ = number;
        watch->waiters_.wake_all();
    };
    for (int signum : signals) {
        auto* h = handles_.emplace_back(new detail::Handle);
        h->owner = this;
        uv_signal_init(uv_loop(), &h->uv.signal);
        uv_signal_start(&h->uv.signal, on_signal, signum);
    }
}

SignalWatch::~SignalWatch() {
    for (auto* h : handles_)
        h->close_handle();  // (which stops the watcher: no more calls to us)
}

Coroutine<int> SignalWatch::wait() {
    while (received_ == 0)
        co_await waiters_.wait();
    co_return std::exchange(received_, 0);  // taken: the next wait() waits for the next one
}

}  // namespace coro
