#include "runtime.hpp"

#include <deque>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

namespace coro {
namespace detail {

namespace {

// The runtime's state: one loop per thread, as in asyncio.
struct Runtime {
    uv_loop_t loop;
    bool initialised = false;
    TaskRoot* current = nullptr;
    std::deque<Waiter> ready;   // coroutines to resume on the next turn
    Handle* idle = nullptr;     // active while `ready` is not empty
    std::set<Handle*> handles;  // every open Handle
    std::set<TaskRoot*> roots;  // every spawned task still running
};

thread_local Runtime runtime;

void on_idle(uv_idle_t*) {
    // Resume what is ready now; what these resumptions schedule waits for
    // the next turn, so I/O callbacks get their share of the loop.
    std::deque<Waiter> batch = std::exchange(runtime.ready, {});
    for (auto& w : batch)
        resume(w.handle, w.root);
    if (runtime.ready.empty() && runtime.idle) uv_idle_stop(&runtime.idle->uv.idle);
}

}  // namespace

void TaskRoot::request_cancel() {
    if (finished) return;
    if (on_cancel) {
        auto interrupt = std::exchange(on_cancel, nullptr);
        interrupt();
    } else {
        cancel_requested = true;
    }
}

TaskRoot* current_root() {
    return runtime.current;
}

uv_loop_t* loop() {
    if (!runtime.initialised) throw std::logic_error("coro: no loop (call inside coro::run)");
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

void wake_all(std::vector<Waiter>& waiters) {
    for (auto& w : std::exchange(waiters, {})) {
        // Woken: a cancel from now on is for the task's next await.
        if (w.root) w.root->on_cancel = nullptr;
        schedule(w.handle, w.root);
    }
}

bool ParkAwaiter::await_suspend(std::coroutine_handle<> h) {
    me_ = h;
    root_ = current_root();
    if (root_ && root_->take_cancel()) {
        cancelled_ = true;
        return false;  // throw at once, from await_resume
    }
    list_.push_back({h, root_});
    if (root_) {
        root_->on_cancel = [this] {
            std::erase_if(list_, [&](const Waiter& w) { return w.handle == me_; });
            cancelled_ = true;
            schedule(me_, root_);
        };
    }
    return true;
}

void ParkAwaiter::await_resume() {
    if (root_) root_->on_cancel = nullptr;
    if (cancelled_) throw CancelledError();
}

void close_callback(uv_handle_t* h) {
    Handle* handle = static_cast<Handle*>(h->data);
    if (handle->on_closed) handle->on_closed();
    delete handle;
}

Handle::Handle() : uv{} {
    uv.handle.data = this;
    runtime.handles.insert(this);
}

Handle::~Handle() = default;

void Handle::close() {
    if (uv_is_closing(handle())) return;
    runtime.handles.erase(this);
    uv_close(handle(), close_callback);
}

Timer::Timer(std::chrono::milliseconds delay, std::function<void()> fire)
    : handle_(new Handle), fire_(std::move(fire)) {
    uv_timer_init(loop(), &handle_->uv.timer);
    handle_->uv.timer.data = handle_;
    handle_->owner = this;
    uv_timer_start(
        &handle_->uv.timer,
        [](uv_timer_t* t) {
            // Only reached while the Timer exists: stop() closes the handle,
            // and a closed timer never fires.
            auto* self = static_cast<Timer*>(static_cast<Handle*>(t->data)->owner);
            self->fire_();
        },
        static_cast<std::uint64_t>(delay.count()), 0);
}

void Timer::stop() {
    if (!handle_) return;
    handle_->close();
    handle_ = nullptr;
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
    runtime.idle->uv.idle.data = runtime.idle;
    runtime.handles.erase(runtime.idle);  // internal: closed last, by close_loop
}

void run_loop_until(const std::function<bool()>& done) {
    while (!done()) {
        // UV_RUN_ONCE blocks until something happens. If nothing can happen
        // (no handle, no ready task) the main task is stuck forever: say so.
        if (uv_run(&runtime.loop, UV_RUN_ONCE) == 0 && !done() && runtime.ready.empty()) {
            throw std::logic_error("coro::run: main task waits for something that cannot happen");
        }
    }
}

void cancel_leftovers() {
    // Like asyncio.run: cancel every task still running and let each unwind.
    while (!runtime.roots.empty()) {
        for (TaskRoot* root : std::set<TaskRoot*>(runtime.roots))
            root->request_cancel();
        if (uv_run(&runtime.loop, UV_RUN_ONCE) == 0 && runtime.ready.empty()) break;
    }
}

void close_loop() {
    // Handles someone forgot to close (a server never closed, say): close them
    // now, so no descriptor outlives the run.
    for (Handle* h : std::set<Handle*>(runtime.handles))
        h->close();
    runtime.idle->close();
    runtime.idle = nullptr;
    uv_run(&runtime.loop, UV_RUN_DEFAULT);
    const int rc = uv_loop_close(&runtime.loop);
    runtime.initialised = false;
    if (rc != 0)
        throw std::logic_error(fmt::format("coro::run: uv_loop_close: {}", uv_strerror(rc)));
}

}  // namespace detail

SignalWatch::SignalWatch(const std::vector<int>& signals) {
    for (int signum : signals) {
        auto* h = new detail::Handle;
        h->owner = this;
        uv_signal_init(detail::loop(), &h->uv.signal);
        uv_signal_start(
            &h->uv.signal,
            [](uv_signal_t* signal, int number) {
                auto* watch =
                    static_cast<SignalWatch*>(static_cast<detail::Handle*>(signal->data)->owner);
                if (watch->received_ == 0) watch->received_ = number;
                detail::wake_all(watch->waiters_);
            },
            signum);
        handles_.push_back(h);
    }
}

SignalWatch::~SignalWatch() {
    // The handles outlive us until their close callbacks; they no longer
    // start ours (uv_close stops the watcher first).
    for (auto* h : handles_)
        h->close();
}

Task<int> SignalWatch::wait() {
    while (received_ == 0)
        co_await detail::park(waiters_);
    co_return received_;
}

Task<int> wait_for_signal(std::vector<int> signals) {
    SignalWatch watch(signals);
    co_return co_await watch.wait();
}

bool is_cancelled_error(const std::exception_ptr& error) {
    if (!error) return false;
    try {
        std::rethrow_exception(error);
    } catch (const CancelledError&) {
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace coro
