// The loop: the ready queue, wait lists, handles, timers, signals, run().
#include <deque>
#include <set>

#include <fmt/format.h>

#include "../runtime.hpp"

namespace coro::detail {

namespace {
struct Ready {
    std::coroutine_handle<> handle;
    TaskRoot* root;
};

// The runtime's state: one loop per thread, as in asyncio.
struct Runtime {
    uv_loop_t loop;
    bool initialised = false;
    TaskRoot* current = nullptr;
    std::deque<Ready> ready;    // coroutines to resume on the next turn
    Handle* idle = nullptr;     // active while `ready` is not empty
    std::set<TaskRoot*> roots;  // every spawned task still running
};
thread_local Runtime runtime;

void on_idle(uv_idle_t*) {
    // Resume what is ready now; what they schedule waits for the next turn,
    // so I/O callbacks get their share of the loop.
    for (Ready& r : std::exchange(runtime.ready, {}))
        resume(r.handle, r.root);
    if (runtime.ready.empty()) uv_idle_stop(&runtime.idle->uv.idle);
}
}  // namespace

TaskRoot* current_root() {
    return runtime.current;
}

uv_loop_t* loop() {
    if (!runtime.initialised) throw std::logic_error("coro: called outside coro::run (no loop)");
    return &runtime.loop;
}

void resume(std::coroutine_handle<> h, TaskRoot* root) {
    TaskRoot* saved = std::exchange(runtime.current, root);
    h.resume();
    runtime.current = saved;
}

void schedule(std::coroutine_handle<> h, TaskRoot* root) {
    runtime.ready.push_back({h, root});
    uv_idle_start(&runtime.idle->uv.idle, on_idle);
}

void TaskRoot::request_cancel() {
    if (finished) return;
    if (Park* awaiter = std::exchange(hook, nullptr)) return awaiter->interrupt();
    cancel_requested = true;
}

bool Park::await_suspend(std::coroutine_handle<> h) {
    me_ = h;
    root_ = current_root();
    if (root_ && root_->take_cancel()) {
        cancelled_ = true;  // throw at once, from await_resume
        return false;
    }
    prev_ = std::exchange(list_->tail_, this);
    (prev_ ? prev_->next_ : list_->head_) = this;
    linked_ = true;
    if (root_) root_->hook = this;  // cancel() interrupts us from now on
    return true;
}

void Park::interrupt() {
    if (!linked_) {
        root_->cancel_requested = true;
        return;
    }
    unlink();
    cancelled_ = true;
    schedule(me_, root_);
}

void Park::unlink() {
    (prev_ ? prev_->next_ : list_->head_) = next_;
    (next_ ? next_->prev_ : list_->tail_) = prev_;
    prev_ = next_ = nullptr;
    linked_ = false;
}

void WaitList::wake_all() {
    while (Park* p = head_) {
        p->unlink();
        schedule(p->me_, p->root_);
    }
}

void Handle::closed(uv_handle_t* h) {
    Handle* handle = static_cast<Handle*>(h->data);
    if (handle->on_closed) handle->on_closed();
    delete handle;
}

Timer::Timer(std::chrono::milliseconds delay, std::function<void()> fire)
    : handle_(new Handle), fire_(std::move(fire)) {
    uv_timer_init(loop(), &handle_->uv.timer);
    handle_->owner = this;
    auto on_timer = [](uv_timer_t* t) { Handle::owner_of<Timer>(t)->fire_(); };
    uv_timer_start(&handle_->uv.timer, on_timer, static_cast<std::uint64_t>(delay.count()), 0);
}

void report_unretrieved(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const CancelledError&) {
        // A cancelled task that nobody awaited: nothing to report.
    } catch (const std::exception& e) {
        fmt::print(stderr, "coro: task exception was never retrieved: {}\n", e.what());
    } catch (...) {
        fmt::print(stderr, "coro: task exception was never retrieved (not a std::exception)\n");
    }
}

void track(TaskRoot* root) {
    runtime.roots.insert(root);
}

void untrack(TaskRoot* root) {
    runtime.roots.erase(root);
}

void init_loop() {
    if (runtime.initialised) throw std::logic_error("coro::run is already running");
    uv_loop_init(&runtime.loop);
    runtime.initialised = true;
    runtime.idle = new Handle;
    uv_idle_init(&runtime.loop, &runtime.idle->uv.idle);
}

namespace {
// Like asyncio.run: cancel every task still running, once, and wait for each
// to unwind -- its cleanup may await, and cancelling again would cut that
// short. A task that waits for something that can no longer happen (nothing
// left to wake it) is freed: its frame is destroyed, its destructors run.
void finish_tasks() {
    for (TaskRoot* root : std::set<TaskRoot*>(runtime.roots))
        root->request_cancel();
    while (!runtime.roots.empty()) {
        const bool idle = uv_run(&runtime.loop, UV_RUN_ONCE) == 0 && runtime.ready.empty();
        if (idle && !runtime.roots.empty())              // nothing can wake those left: free one
            (*runtime.roots.begin())->driver.destroy();  // (it untracks itself)
    }
}

// Close every handle left (a server nobody closed, say), so that no
// descriptor outlives the run, and leave the runtime ready for the next.
void close_loop() {
    auto close = [](uv_handle_t* h, void*) { static_cast<Handle*>(h->data)->close(); };
    uv_walk(&runtime.loop, close, nullptr);  // each of ours is a Handle
    uv_run(&runtime.loop, UV_RUN_DEFAULT);
    runtime.ready.clear();
    runtime.idle = nullptr;
    runtime.initialised = false;
    if (int rc = uv_loop_close(&runtime.loop); rc != 0)
        throw std::logic_error(fmt::format("coro::run: uv_loop_close: {}", uv_strerror(rc)));
}
}  // namespace

void run_loop(const std::function<bool()>& done) {
    std::exception_ptr error;
    try {
        while (!done()) {
            // UV_RUN_ONCE blocks until something happens. If nothing can
            // happen (no handle, no ready task), the main task is stuck
            // forever: say so.
            if (uv_run(&runtime.loop, UV_RUN_ONCE) == 0 && !done() && runtime.ready.empty())
                throw std::logic_error(
                    "coro::run: main task waits for something that cannot happen");
        }
    } catch (...) {
        // Rethrown below, once the run is wound up: a later run must work.
        error = std::current_exception();
    }
    finish_tasks();
    close_loop();
    if (error) std::rethrow_exception(error);
}

}  // namespace coro::detail

namespace coro {

SignalWatch::SignalWatch(const std::vector<int>& signals) {
    auto on_signal = [](uv_signal_t* h, int number) {
        auto* watch = detail::Handle::owner_of<SignalWatch>(h);
        if (watch->received_ == 0) watch->received_ = number;
        watch->waiters_.wake_all();
    };
    for (int signum : signals) {
        auto* h = handles_.emplace_back(new detail::Handle);
        h->owner = this;
        uv_signal_init(detail::loop(), &h->uv.signal);
        uv_signal_start(&h->uv.signal, on_signal, signum);
    }
}

SignalWatch::~SignalWatch() {
    for (auto* h : handles_)
        h->close();  // (which stops the watcher: no more calls to us)
}

Task<int> SignalWatch::wait() {
    while (received_ == 0)
        co_await detail::park(waiters_);
    co_return std::exchange(received_, 0);  // taken: the next wait() waits for the next one
}

Task<int> wait_for_signal(std::vector<int> signals) {
    SignalWatch watch(signals);
    co_return co_await watch.wait();
}

}  // namespace coro
