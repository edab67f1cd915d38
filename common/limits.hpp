// How much a server holds for one client, and for how long -- the same
// numbers in every stage, set with --max-pending and --stall-timeout.
//
// Flow control in one paragraph: when relaying a frame takes a receiver's
// pending output over `max_pending` (the high-water mark), the server stops
// reading from the client that sent it (in echo mode: the client itself).
// TCP then slows that sender down -- nothing is dropped, nothing grows. Once
// the receiver is back under `low_water()` the sender is read again. A
// receiver that takes no byte at all for `stall_timeout` is disconnected (with
// a log line), and whoever it held back resumes at once. So a receiver's
// queue never holds more than
//
//     max_pending + one frame (max frame + 4 bytes) per sender
//
// and a slow reader slows its senders down instead of losing frames.
//
// Those are bytes, queued as bytes: every stage appends a frame to a
// receiver's byte buffer (03 and 04: two, the one being written and the one
// filling behind it), never one allocation or write request per frame. So the
// memory a receiver costs is at most 4x its queued bytes (buffers double as
// they grow; 02's keeps written bytes until they are half of it) plus its
// connection's fixed cost, whatever the size of the frames -- 0 bytes included.
#pragma once

#include <chrono>
#include <cstddef>

namespace limits {

using namespace std::chrono_literals;

struct Limits {
    std::size_t max_pending = 1024 * 1024;  // bytes: the high-water mark per receiver
    std::chrono::milliseconds stall_timeout = 5s;
    std::chrono::milliseconds shutdown_grace = 5s;  // to flush queued output on SIGINT/SIGTERM

    // Senders resume once the receiver is below this: half the mark, so a
    // sender is paused and resumed once per half-mark drained, not per frame.
    std::size_t low_water() const { return max_pending / 2; }
};

}  // namespace limits
