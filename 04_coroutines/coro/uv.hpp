// coro/uv.hpp -- the libuv bridge: how to make your own awaitable from a libuv
// request, with public names only. (The only header of coro/ with <uv.h>.)
//
// A request (uv_getaddrinfo_t, uv_fs_t, uv_work_t...) and the Future its
// callback completes go on the heap together, as a Request; the task awaits
// the Future:
//
//   using Lookup = coro::Request<uv_getaddrinfo_t, sockaddr_storage>;
//   auto lookup = std::make_unique<Lookup>();
//   coro::Future<sockaddr_storage> address = lookup->future;  // (a copy: shared)
//   if (int rc = uv_getaddrinfo(coro::uv_loop(), &lookup->req, on_done, ...); rc != 0)
//       throw ...;                  // libuv never took it: the unique_ptr frees it
//   lookup.release();               // libuv holds it now, until on_done
//   sockaddr_storage a = co_await address;
//
//   void on_done(uv_getaddrinfo_t* req, int status, addrinfo* res) {
//       auto lookup = Lookup::owner(req);  // ours again: freed at the end
//       lookup->future.set_result(...);    // or set_exception(...)
//   }
//
// This keeps libuv's two rules for you:
// 1. What libuv holds lives on the heap, never in a coroutine frame: a
//    cancelled task's frame goes at once, while libuv still holds the request
//    until its callback runs.
// 2. A callback never resumes a coroutine: set_result() puts the awaiting task
//    on the ready queue, and the loop resumes it once the callback has
//    returned. (A task resumed any other way is stopped with a logic_error at
//    its next await: the runtime checks.)
//
// Reading path, step 7 (README.md).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

#include "wait.hpp"

namespace coro {

uv_loop_t* uv_loop();  // the loop of the current run(); logic_error outside one

// ANCHOR: request
// A libuv request and the Future its callback completes, on the heap.
template <typename Req, typename T = void>
struct Request {
    Req req{};
    Future<T> future;

    Request() { req.data = this; }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    // In the callback: the Request that `req` belongs to, owned again.
    static std::unique_ptr<Request> owner(Req* r) {
        return std::unique_ptr<Request>(static_cast<Request*>(r->data));
    }
};
// ANCHOR_END: request

namespace detail {

// What a libuv handle's `data` points to: through it, run() closes every
// handle left open at its end.
struct HandleOwner {
    virtual void close_handle() = 0;

  protected:
    ~HandleOwner() = default;
};

template <typename T>
T* holder_of(void* uv_handle) {  // in callbacks: the object that holds the handle
    return static_cast<T*>(static_cast<HandleOwner*>(static_cast<uv_handle_t*>(uv_handle)->data));
}

// A libuv handle (a timer, a signal) on the heap, by the same rule as a
// Request: close_handle() asks libuv to close it, and its memory goes in the
// close callback, never earlier. (A stream holds its handle itself:
// streams.cpp.)
struct Handle final : HandleOwner {
    uv_any_handle uv{};
    void* owner = nullptr;  // the object its callbacks are for

    Handle() { uv.handle.data = static_cast<HandleOwner*>(this); }
    void close_handle() override {
        if (!uv_is_closing(&uv.handle))
            uv_close(&uv.handle, [](uv_handle_t* h) { delete holder_of<Handle>(h); });
    }
    template <typename T>
    static T* owner_of(void* uv_handle) {  // in callbacks: the object they are for
        return static_cast<T*>(holder_of<Handle>(uv_handle)->owner);
    }

  private:
    ~Handle() = default;  // only the close callback deletes
};

}  // namespace detail
}  // namespace coro
