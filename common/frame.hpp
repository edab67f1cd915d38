// The wire protocol shared by every stage: a frame is a 4-byte unsigned
// big-endian length N followed by N payload bytes (N = 0 is a valid frame).
//
// This module does no I/O at all ("sans-I/O"). The decoder is fed whatever bytes
// a read happened to return -- one byte, half a header, ten frames at once -- and
// hands back complete frames. That is why the blocking, select, callback and
// coroutine stages can all share it: they differ only in *how* they get bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace frame {

inline constexpr std::size_t header_size = 4;
inline constexpr std::uint32_t default_max_frame = 1024 * 1024;  // 1 MiB

// Header followed by payload, ready to write to a socket.
std::string encode(std::string_view payload);

// Appends header and payload to `out` (avoids a temporary when batching).
void encode_into(std::string& out, std::string_view payload);

class Decoder {
  public:
    explicit Decoder(std::uint32_t max_frame = default_max_frame) : max_frame_(max_frame) {}

    // Consumes a chunk of bytes of any size. After an error, further input is
    // ignored: the stream cannot be resynchronised, the connection must close.
    void feed(std::string_view chunk);

    // The next complete frame, or nullopt when more bytes are needed (or after
    // an error, which failed() then reports).
    std::optional<std::string> next();
    bool ready() const { return taken_ < ready_.size(); }  // next() has a frame

    bool failed() const { return failed_; }
    // Human-readable reason, e.g. "frame of 4294967295 bytes exceeds the limit of 1048576".
    // (Made when asked, from the length and the limit: a connection does not
    // carry a string for an error it will almost never have.)
    std::string error() const;

    // True when part of a frame has arrived but not all of it: a peer that
    // disconnects now loses that partial frame (it is never delivered).
    bool mid_frame() const { return header_filled_ > 0; }
    // Of that partial frame: the bytes that came (header included), and how
    // many it needs (only the header's 4, while the header is incomplete).
    std::size_t partial_bytes() const { return header_filled_ + payload_.size(); }
    std::size_t partial_needs() const {
        return header_filled_ < header_size ? header_size : header_size + expected_;
    }
    std::uint32_t max_frame() const { return max_frame_; }

  private:
    std::uint32_t max_frame_;
    unsigned char header_[header_size] = {};
    std::size_t header_filled_ = 0;  // 0..4 header bytes seen for the current frame
    std::uint32_t expected_ = 0;     // payload length, valid once the header is complete
    std::string payload_;            // the payload received so far
    // Complete frames not yet taken by next(): ready_[taken_..]. A vector
    // allocates nothing while empty (a deque always does), and an idle
    // connection should cost as little memory as possible.
    std::vector<std::string> ready_;
    std::size_t taken_ = 0;
    bool failed_ = false;
};

}  // namespace frame
