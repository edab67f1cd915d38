#include "trace_json.hpp"

#include "log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace logs::json {

namespace {

// One file per process, shared by its threads (01 has one per client): each
// event is written whole under the mutex. Never destroyed, so that a thread
// still running at exit finds a closed sink, not a destroyed one.
struct Sink {
    std::mutex mutex;
    std::FILE* file = nullptr;
    int pid = 0;
    std::map<int, std::size_t> pending;  // per client
    std::size_t total = 0;
};
Sink& sink() {
    static Sink* s = new Sink;
    return *s;
}
std::atomic<bool> is_open{false};

struct Idle {
    std::string_view name;  // a literal
    double since = -1;      // < 0: not waiting
};
thread_local Idle idle;

// Callers hold the mutex.
void write_locked(Sink& s, std::string_view event) {
    if (!s.file) return;
    std::fputs(",\n", s.file);
    std::fwrite(event.data(), 1, event.size(), s.file);
}

// The first event of a thread names its track.
void name_thread_locked(Sink& s) {
    thread_local bool named = false;
    if (std::exchange(named, true)) return;
    const int tid = thread_number();
    const std::string name = tid == 0 ? "main thread" : fmt::format("thread {}", tid);
    write_locked(s, fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},)"
                                R"("args":{{"name":{}}}}})",
                                s.pid, tid, quote(name)));
    write_locked(s, fmt::format(R"({{"ph":"M","name":"thread_sort_index","pid":{},"tid":{},)"
                                R"("args":{{"sort_index":{}}}}})",
                                s.pid, tid, tid));
}

void emit(std::string_view body) {  // body: the event's fields after ph and name
    Sink& s = sink();
    std::lock_guard lock(s.mutex);
    if (!s.file) return;
    name_thread_locked(s);
    write_locked(s, body);
}

}  // namespace

void open(const std::string& path, std::string_view process) {
    Sink& s = sink();
    std::lock_guard lock(s.mutex);
    s.file = std::fopen(path.c_str(), "w");
    if (!s.file) throw std::runtime_error(fmt::format("cannot write {}", path));
    s.pid = static_cast<int>(::getpid());
    (void)thread_number();  // the thread that opens the file is th0, the main thread
    // The first element is the process's name, so that every later one can
    // start with a comma.
    fmt::print(s.file,
               R"([{{"ph":"M","name":"process_name","pid":{},"tid":0,"args":{{"name":{}}}}})",
               s.pid, quote(process));
    is_open = true;
    std::atexit(close);
}

bool recording() {
    return is_open.load(std::memory_order_relaxed);
}

void close() {
    Sink& s = sink();
    std::lock_guard lock(s.mutex);
    if (!s.file) return;
    std::fputs("\n]\n", s.file);
    std::fclose(s.file);
    s.file = nullptr;
    is_open = false;
}

double now_us() {
    return std::chrono::duration<double, std::micro>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void idle_begin(std::string_view name) {
    if (!active()) return;
    idle = {name, now_us()};
}

void idle_end() {
    if (idle.since < 0) return;
    const double since = std::exchange(idle.since, -1);
    span(idle.name, since, now_us(), "");
}

void instant(std::string_view name, std::string_view args) {
    if (!active()) return;
    idle_end();
    emit(
        fmt::format(R"({{"ph":"i","s":"t","name":{},"ts":{:.3f},"pid":{},"tid":{},"args":{{{}}}}})",
                    quote(name), now_us(), sink().pid, thread_number(), args));
}

void span(std::string_view name, double start_us, double end_us, std::string_view args) {
    if (!active()) return;
    emit(fmt::format(
        R"({{"ph":"X","name":{},"ts":{:.3f},"dur":{:.3f},"pid":{},"tid":{},"args":{{{}}}}})",
        quote(name), start_us, end_us - start_us, sink().pid, thread_number(), args));
}

void pending(int client, std::size_t bytes) {
    if (!active()) return;
    Sink& s = sink();
    idle_end();
    std::lock_guard lock(s.mutex);
    if (!s.file) return;
    name_thread_locked(s);
    std::size_t& mine = s.pending[client];
    s.total = s.total - mine + bytes;
    mine = bytes;
    if (bytes == 0) s.pending.erase(client);
    const double ts = now_us();
    const int tid = thread_number();
    write_locked(s, fmt::format(R"({{"ph":"C","name":"queued for client {}","ts":{:.3f},)"
                                R"("pid":{},"tid":{},"args":{{"bytes":{}}}}})",
                                client, ts, s.pid, tid, bytes));
    write_locked(s, fmt::format(R"({{"ph":"C","name":"queued in total","ts":{:.3f},)"
                                R"("pid":{},"tid":{},"args":{{"bytes":{}}}}})",
                                ts, s.pid, tid, s.total));
}

std::string quote(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
            out += c;
        }
    }
    return out + "\"";
}

}  // namespace logs::json
