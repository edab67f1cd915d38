// Exercise 3 of README.md, "make your own awaitable":
//
//   sockaddr_storage addr = co_await coro::resolve("localhost", 1234);
//
// looks a host name up with uv_getaddrinfo -- on libuv's thread pool, so the
// loop goes on serving everyone else meanwhile (open_connection's
// net::resolve blocks it). Build it from public names only, with coro/uv.hpp:
// the request and a coro::Future on the heap in a coro::Request, the callback
// sets the Future's result (or a coro::ConnectionError), the coroutine awaits
// the Future. Until then, resolve.cpp throws "not implemented".
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "coro/coroutine.hpp"

namespace coro {

Coroutine<sockaddr_storage> resolve(std::string host, std::uint16_t port);

}  // namespace coro
