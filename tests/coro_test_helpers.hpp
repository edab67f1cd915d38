// What the coroutine runtime's tests share: a connection over loopback to a
// server of the test's own, an echo handler, and a join that expects a cancel.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "coro/loop.hpp"
#include "coro/streams.hpp"

namespace coro_test {

using coro::Coroutine;

// Waits for a task that is expected to end cancelled.
template <typename T>
Coroutine<void> join_cancelled(coro::Task<T>& handle) {
    try {
        co_await handle;
    } catch (const coro::CancelledError&) {
    }
}

// A server running `handler`, a connection to it, and `body` on the client side.
template <typename Handler, typename Body>
auto with_connection(Handler handler, Body body) {
    using Result = typename std::invoke_result_t<Body&, coro::Connection&>::value_type;
    auto main = [](Handler h, Body b) -> Coroutine<Result> {
        auto server = co_await coro::start_server(h, "127.0.0.1", 0);
        const std::string address = server.address();
        const auto port =
            static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
        coro::Connection connection = co_await coro::open_connection("127.0.0.1", port);
        auto result = b(connection);
        server.close();
        co_return co_await std::move(result);
    };
    return coro::run(main(std::move(handler), std::move(body)));
}

Coroutine<void> echo(coro::StreamReader reader, coro::StreamWriter writer) {
    while (true) {
        std::string bytes = co_await reader.read();
        if (bytes.empty()) break;
        writer.write(bytes);
        co_await writer.drain();
    }
    writer.close();
}

}  // namespace coro_test
