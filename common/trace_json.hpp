// --trace-json FILE: what the loop did, for a timeline viewer.
//
// The same events as --trace (common/log.hpp), plus how long each handler
// ran, written in the Chrome Trace Event Format: a JSON array of events that
// Perfetto's UI (ui.perfetto.dev) and chrome://tracing open, and that
// `./workshop trace` draws as a page of its own. Per event:
//
//   {"ph":"X", "name":"on_readable", "ts":..., "dur":..., "pid":..., "tid":..., "args":{...}}
//
// - ph "X", a span: a handler's run (on_readable, on_writable, on_frame...),
//   the CPU work of --work, or the loop waiting in select()/epoll ("idle").
// - ph "i", an instant: accept, read, frame, queue, write, pause, resume, close.
// - ph "C", a counter: bytes queued per client and in total.
// - ph "M", metadata: the names of the process and of its threads.
//
// `ts` and `dur` are microseconds of the system's monotonic clock, the same
// in every process on the machine: a client's file and a server's line up.
// `tid` is logs::thread_number() (0 is the main thread): one track per thread.
//
// Everything here is off (one test of a pointer) unless --trace-json was given.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace logs::json {

// Starts the file (throws std::runtime_error if it cannot be created); it is
// closed at exit, or by close(). `process` names the program in the viewer.
void open(const std::string& path, std::string_view process);
// Whether events are recorded: the one test every trace site makes when
// --trace-json is off. (Built with -DTRACE_JSON=OFF, the benchmark's
// baseline, it is a constant false and the sites compile to nothing.)
bool recording();
inline bool active() {
#ifdef TRACE_JSON_COMPILED_OUT
    return false;
#else
    return recording();
#endif
}
void close();  // writes the closing bracket; later events are dropped

double now_us();  // the monotonic clock, in microseconds

// `args` is the inside of a JSON object, e.g. "\"client\":3" (or empty).
void instant(std::string_view name, std::string_view args);
void span(std::string_view name, double start_us, double end_us, std::string_view args);
// Bytes the program holds for `client` now (0 once it is gone): one counter
// per client and one for all of them.
void pending(int client, std::size_t bytes);

// The loop of this thread starts waiting for I/O (in select(), epoll...);
// idle_end() -- or this thread's next event, whichever comes first -- ends the
// wait, as a span named `name`. (libuv runs I/O callbacks inside its poll
// phase: the first of them is where the wait really ended.)
void idle_begin(std::string_view name);
void idle_end();

std::string quote(std::string_view text);  // a JSON string, with its quotes

}  // namespace logs::json
