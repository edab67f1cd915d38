// The command-line contract shared by every server and client of every stage.
// Tests and users rely on it, so it is parsed in exactly one place.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frame.hpp"
#include "limits.hpp"

namespace cli {

struct ServerOptions {
    std::string host = "127.0.0.1";  // loopback: --host 0.0.0.0 or :: exposes the server
    std::uint16_t port = 1234;       // 0 = let the kernel pick a free port
    std::uint32_t max_frame = frame::default_max_frame;
    bool echo = false;      // frames go back to their sender only (benchmarks)
    bool trace = false;     // log every event (see common/log.hpp)
    std::string mode;       // only for stages that offer several, e.g. 01's iterative/threads
    limits::Limits limits;  // --max-pending, --stall-timeout (see common/limits.hpp)
    std::chrono::microseconds work{0};  // --work: CPU spent on each frame (common/work.hpp)
    // Values of the program's own options (Program::options), by name, e.g.
    // extra["--idle-timeout"] == "30". Absent when not given.
    std::map<std::string, std::string, std::less<>> extra;
};

struct ClientOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 1234;
    bool trace = false;
};

// An option only one program has (an exercise's, say): it is listed in that
// program's --help and lands in ServerOptions::extra (a flag, with an empty
// value, as "").
struct Option {
    std::string_view name;   // "--idle-timeout"
    std::string_view value;  // "SECONDS", for the help text; empty for a flag
    std::string_view help;   // one line
};

// What a stage tells the parser about itself, for --help and --mode.
struct Program {
    std::string_view name;                     // e.g. "01_blocking/server"
    std::string_view summary;                  // one line: what this program demonstrates
    std::vector<std::string_view> modes = {};  // first one is the default
    std::vector<Option> options = {};          // its own options, if any
};

// "5", "0.5": a positive number of seconds (at most a day), to the
// millisecond; nullopt if not. For --stall-timeout, and an exercise's own.
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text);

// Both print usage and exit(0) on --help, or print the problem plus usage on
// stderr and exit(2) on a bad argument.
ServerOptions parse_server(const Program& program, std::span<char*> args);
ClientOptions parse_client(const Program& program, std::span<char*> args);

// The client's output: each frame received, as one line on stdout, flushed at
// once (stdout may be a pipe, which would otherwise hold it back).
void print_frame(std::string_view payload);

}  // namespace cli
