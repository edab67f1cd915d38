// Internals of coro/runtime.hpp: the bodies of its templates.
#pragma once

#include <string>

#include "../runtime.hpp"

namespace coro {

namespace detail {
void init_loop();
// Until done(); then cancels the tasks left, closes the handles left, checks.
void run_loop(const std::function<bool()>& done);
}  // namespace detail

template <typename T>
T run(Task<T> main) {
    detail::init_loop();
    JoinHandle<T> handle = spawn(std::move(main));
    detail::run_loop([&] { return handle.done(); });
    return handle.result();
}

// Every child is awaited to its end, so none is left running on its own; the
// first error cancels the others. A cancel of gather passes on to the child it
// awaits (see Join), and through that child's CancelledError to all the others.
template <typename T>
Task<detail::Gathered<T>> gather(std::vector<Task<T>> tasks) {
    std::vector<JoinHandle<T>> children;
    for (auto& task : tasks)
        children.push_back(spawn(std::move(task)));
    std::exception_ptr first_error;
    for (auto& child : children) {
        child.on_done([&children, &first_error, c = &child] {
            if (std::exception_ptr e = c->exception(); e && !first_error) {
                first_error = e;
                for (auto& other : children)
                    other.cancel();
            }
        });
    }
    std::conditional_t<std::is_void_v<T>, bool, std::vector<T>> results{};
    for (auto& child : children) {
        try {
            // Each result is taken once, here: a JoinHandle's result moves out.
            if constexpr (std::is_void_v<T>) {
                co_await child;
            } else {
                results.push_back(co_await child);
            }
        } catch (...) {
            // (on_done has seen it)
        }
    }
    if (first_error) std::rethrow_exception(first_error);
    if constexpr (!std::is_void_v<T>) co_return results;
}

namespace detail {
// to_thread's request: a SpawnState filled by a pool thread instead of a task,
// so awaiting it is awaiting a JoinHandle. It owns itself until its callback.
template <typename F, typename T = std::invoke_result_t<F&>>
struct Work : SpawnState<T> {
    uv_work_t req{};
    F fn;
    std::shared_ptr<Work> self;
    explicit Work(F f) : fn(std::move(f)) {}
};
}  // namespace detail

template <typename F>
Task<std::invoke_result_t<F&>> to_thread(F fn) {
    using Work = detail::Work<F>;
    auto work = std::make_shared<Work>(std::move(fn));
    work->req.data = work.get();
    auto run = [](uv_work_t* req) {  // on a pool thread
        auto* w = static_cast<Work*>(req->data);
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
                w->fn();
            } else {
                w->value.emplace(w->fn());
            }
        } catch (...) {
            w->error = std::current_exception();
        }
    };
    auto after = [](uv_work_t* req, int) {  // back on the loop
        auto* w = static_cast<Work*>(req->data);
        // Cancelled meanwhile (Join passes the cancel on to us): the result goes.
        if (w->take_cancel()) w->error = std::make_exception_ptr(CancelledError());
        w->finish();
        w->self.reset();  // may free it: nothing after this
    };
    if (int rc = uv_queue_work(detail::loop(), &work->req, run, after); rc != 0)
        throw std::runtime_error(std::string("uv_queue_work: ") + uv_strerror(rc));
    work->self = work;
    co_return co_await JoinHandle<std::invoke_result_t<F&>>(work);
}

}  // namespace coro
