#include "stages.hpp"

#include <algorithm>
#include <stdexcept>

#include "stages.inc"  // generated: defines the SERVER_* and CLIENT_* paths
#include "uring_probe.hpp"

namespace stages {

std::vector<ServerSpec> built_servers() {
    std::vector<ServerSpec> servers = {
        {.name = "01_blocking_threads",
         .command = {SERVER_01, "--mode", "threads"},
         .queues_output = false,
         .emfile = ServerSpec::OutOfDescriptors::waits},
        {.name = "01_blocking_iterative",
         .command = {SERVER_01, "--mode", "iterative"},
         .concurrent = false,
         .queues_output = false},
        {.name = "02_select",
         .command = {SERVER_02},
         .emfile = ServerSpec::OutOfDescriptors::sheds},
        {.name = "03_libuv_callbacks",
         .command = {SERVER_03},
         .emfile = ServerSpec::OutOfDescriptors::sheds},
        {.name = "04_coroutines",
         .command = {SERVER_04},
         .emfile = ServerSpec::OutOfDescriptors::sheds},
        // The epilogue's: clients are handed out round robin, so with two
        // loops any two clients of a test sit on different loops.
        {.name = "epilogue_multiloop",
         .command = {SERVER_MULTILOOP, "--loops", "2"},
         .emfile = ServerSpec::OutOfDescriptors::sheds},
    };
#ifdef SERVER_URING
    // Only where io_uring works (the epilogue:io_uring test says why not).
    if (io_uring_unavailable().empty()) {
        servers.push_back({.name = "epilogue_uring",
                           .command = {SERVER_URING},
                           .emfile = ServerSpec::OutOfDescriptors::sheds});
    }
#endif
    if (std::string(VALGRIND).empty()) return servers;
    for (const char* stage : {"03_libuv_callbacks", "04_coroutines"}) {
        ServerSpec spec = *std::find_if(servers.begin(), servers.end(),
                                        [&](const ServerSpec& s) { return s.name == stage; });
        spec.name += "_valgrind";
        spec.command.insert(spec.command.begin(),
                            {VALGRIND, "--quiet", "--error-exitcode=99", "--leak-check=full",
                             "--errors-for-leak-kinds=definite"});
        spec.emfile = ServerSpec::OutOfDescriptors::unknown;
        servers.push_back(spec);
    }
    return servers;
}

std::vector<ClientSpec> built_clients() {
    return {
        {.name = "01_blocking", .command = {CLIENT_01}},
        {.name = "02_select", .command = {CLIENT_02}},
        {.name = "03_libuv_callbacks", .command = {CLIENT_03}},
        {.name = "04_coroutines", .command = {CLIENT_04}},
    };
}

std::vector<std::string> server_command(const std::string& name) {
    for (const auto& spec : built_servers()) {
        if (spec.name == name) return spec.command;
    }
    throw std::invalid_argument("no server named " + name);
}

std::vector<std::string> iterative_server() {
    return {SERVER_01, "--mode", "iterative"};
}

std::vector<std::string> select_server() {
    return {SERVER_02};
}

std::vector<std::string> reference_server() {
    return {SERVER_01, "--mode", "threads"};
}

}  // namespace stages
