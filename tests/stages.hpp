// What the conformance suites test: every server and client this build makes.
// The paths come from CMake (stages.inc, generated into the build folder).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace stages {

struct ServerSpec {
    std::string name;                  // shown in test names, e.g. 01_blocking_threads
    std::vector<std::string> command;  // program and fixed arguments
    bool concurrent = true;            // false: serves one client at a time (01 iterative)
    bool ours = true;                  // ours: we may also check its log messages
    // false: it holds no output queue of its own -- a blocking send() holds
    // the sender's thread instead, until the receiver reads (01).
    bool queues_output = true;
    // What it does with a connection it has no descriptor for: shed it
    // (accept and close at once: 02, 03), or leave it queued in the kernel and
    // retry later (01), or we don't know (a server you bring).
    enum class OutOfDescriptors { unknown, sheds, waits } emfile = OutOfDescriptors::unknown;
};

struct ClientSpec {
    std::string name;
    std::vector<std::string> command;
};

// Test names show a spec by its name rather than as raw bytes.
inline void PrintTo(const ServerSpec& spec, std::ostream* out) {
    *out << spec.name;
}
inline void PrintTo(const ClientSpec& spec, std::ostream* out) {
    *out << spec.name;
}

std::vector<ServerSpec> built_servers();
std::vector<ClientSpec> built_clients();
// The 01 iterative server, for the test that shows its limitation.
std::vector<std::string> iterative_server();
// The 02 select server, for the test of its FD_SETSIZE limit.
std::vector<std::string> select_server();
// The command of one of built_servers(), by name (e.g. "02_select").
std::vector<std::string> server_command(const std::string& name);
// The server the client conformance tests talk to.
std::vector<std::string> reference_server();

}  // namespace stages
