#include "uv_net.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "net.hpp"
#include "trace_json.hpp"

namespace net {

std::string peer_of(const uv_tcp_t* handle) {
    sockaddr_storage addr{};
    int len = sizeof addr;
    if (uv_tcp_getpeername(handle, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
    return format_address(reinterpret_cast<const sockaddr*>(&addr));
}

std::string local_of(const uv_tcp_t* handle) {
    sockaddr_storage addr{};
    int len = sizeof addr;
    if (uv_tcp_getsockname(handle, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
    return format_address(reinterpret_cast<const sockaddr*>(&addr));
}

void listen_uv(uv_tcp_t* listener, const std::string& host, std::uint16_t port,
               uv_connection_cb on_connection) {
    const sockaddr_storage addr = resolve(host, port, true);
    if (int rc = uv_tcp_bind(listener, reinterpret_cast<const sockaddr*>(&addr), 0); rc != 0) {
        throw std::runtime_error(
            fmt::format("cannot listen on {}: {}",
                        format_address(reinterpret_cast<const sockaddr*>(&addr)), uv_strerror(rc)));
    }
    // Errors of bind (address in use...) often show up only at listen.
    if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener), SOMAXCONN, on_connection);
        rc != 0) {
        throw std::runtime_error(
            fmt::format("cannot listen on {}: {}",
                        format_address(reinterpret_cast<const sockaddr*>(&addr)), uv_strerror(rc)));
    }
}

void trace_idle(uv_loop_t* loop, IdleSpans& spans) {
    uv_prepare_init(loop, &spans.before_poll);
    uv_check_init(loop, &spans.after_poll);
    uv_unref(reinterpret_cast<uv_handle_t*>(&spans.before_poll));
    uv_unref(reinterpret_cast<uv_handle_t*>(&spans.after_poll));
    if (!logs::json::active()) return;
    uv_prepare_start(&spans.before_poll,
                     [](uv_prepare_t*) { logs::json::idle_begin("idle (libuv poll)"); });
    uv_check_start(&spans.after_poll, [](uv_check_t*) { logs::json::idle_end(); });
}

}  // namespace net
