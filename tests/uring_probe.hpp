// Whether this machine can run the epilogue's io_uring server: the kernel may
// lack io_uring, have it switched off (/proc/sys/kernel/io_uring_disabled),
// or a container's seccomp profile may forbid it. One real io_uring_setup()
// call says, and why not.
#pragma once

#include <string>

#ifdef SERVER_URING
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#endif

namespace stages {

// "" if io_uring works here; otherwise why not, in one line.
inline std::string io_uring_unavailable() {
#ifdef SERVER_URING
    io_uring_params params{};
    const long fd = ::syscall(SYS_io_uring_setup, 4, &params);
    if (fd < 0) return std::string("io_uring_setup: ") + std::strerror(errno);
    ::close(static_cast<int>(fd));
    return "";
#else
    return "the io_uring server was not built (liburing not found: Debian's liburing-dev)";
#endif
}

}  // namespace stages
