// A heap census for the benchmark: preloaded into a server
// (LD_PRELOAD=libheap_census.so), it counts the live heap blocks by size,
// between two signals:
//
//   SIGUSR1  start counting from zero (the server is already warm)
//   SIGUSR2  stop, and write "size count" lines to $HEAP_CENSUS_OUT
//
// So after SIGUSR1, N connections, SIGUSR2, the blocks counted about N times
// are what one idle connection holds: bench.py's census workload. Sizes are
// malloc_usable_size(), what each block really takes, less malloc's 8-byte
// header. glibc only (it calls glibc's own malloc underneath): Linux, like
// the rest of the benchmark.
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void __libc_free(void*);
}

namespace {

constexpr std::size_t sizes = 8192;  // blocks this big or bigger share the last slot
long live[sizes];                    // live blocks counted, by usable size
volatile std::sig_atomic_t counting = 0;
const char* out_path = nullptr;  // $HEAP_CENSUS_OUT, read before main

void note(void* block, long delta) {
    if (!counting || block == nullptr) return;
    std::size_t size = malloc_usable_size(block);
    if (size >= sizes) size = sizes - 1;
    __atomic_add_fetch(&live[size], delta, __ATOMIC_RELAXED);  // (libuv's pool threads too)
}

void on_signal(int signum) {
    if (signum == SIGUSR1) {
        for (long& n : live)
            n = 0;
        counting = 1;
        return;
    }
    counting = 0;
    const int fd = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
    if (fd < 0) return;
    char line[64];
    for (std::size_t size = 0; size < sizes; ++size) {
        if (live[size] == 0) continue;
        const int n = std::snprintf(line, sizeof line, "%zu %ld\n", size, live[size]);
        if (write(fd, line, static_cast<std::size_t>(n)) != n) break;
    }
    close(fd);
}

// Before main: the server's own signal handling (SIGINT, SIGTERM) is not ours.
[[gnu::constructor]] void install() {
    out_path = std::getenv("HEAP_CENSUS_OUT");
    std::signal(SIGUSR1, on_signal);
    std::signal(SIGUSR2, on_signal);
}

}  // namespace

extern "C" {
void* malloc(std::size_t size) {
    void* block = __libc_malloc(size);
    note(block, 1);
    return block;
}
void* calloc(std::size_t count, std::size_t size) {
    void* block = __libc_calloc(count, size);
    note(block, 1);
    return block;
}
void* realloc(void* old, std::size_t size) {
    note(old, -1);
    void* block = __libc_realloc(old, size);
    note(block, 1);
    return block;
}
void free(void* block) {
    note(block, -1);
    __libc_free(block);
}
}
