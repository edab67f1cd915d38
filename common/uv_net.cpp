#include "uv_net.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "net.hpp"

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

}  // namespace net
