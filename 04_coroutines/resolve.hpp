// Exercise 3 of README.md, "write an awaiter":
//
//   sockaddr_storage addr = co_await coro::resolve("localhost", 1234);
//
// looks a host name up with uv_getaddrinfo -- on libuv's thread pool, so the
// loop goes on serving everyone else meanwhile (open_connection's
// net::resolve blocks it). Write it as an awaiter: await_suspend starts the
// request, its callback puts the task back on the ready queue
// (coro::detail::schedule), await_resume returns the address or throws
// coro::ConnectionError. Keep the runtime's rules (coro/runtime.hpp): the
// uv_getaddrinfo_t lives on the heap, not in the coroutine frame, and the
// callback only schedules. Until then, resolve.cpp throws "not implemented".
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "coro/task.hpp"

namespace coro {

Task<sockaddr_storage> resolve(std::string host, std::uint16_t port);

}  // namespace coro
