// net.hpp's plumbing for libuv handles (stages 03 and 04): the same address
// strings and the same errors, so the libuv stages print what 01 and 02 do.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

namespace net {

// "127.0.0.1:50312" or "[::1]:50312"; "?" if the handle has no address.
std::string peer_of(const uv_tcp_t* handle);
std::string local_of(const uv_tcp_t* handle);

// uv_tcp_bind + uv_listen on host:port (0: a free port). Throws
// std::runtime_error saying why, like net::listen_tcp.
void listen_uv(uv_tcp_t* listener, const std::string& host, std::uint16_t port,
               uv_connection_cb on_connection);

// --trace-json (common/trace_json.hpp): the loop's idle time, as one span per
// wait, from just before libuv polls for I/O (uv_prepare) to the first
// callback it runs (or to uv_check, right after the poll). Both handles are
// unreferenced, so they never keep the loop alive; like every handle they
// must be closed before uv_loop_close.
struct IdleSpans {
    uv_prepare_t before_poll;
    uv_check_t after_poll;
};
// Initialises both handles; starts them only with --trace-json.
void trace_idle(uv_loop_t* loop, IdleSpans& spans);

}  // namespace net
