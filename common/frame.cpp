#include "frame.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace frame {

void encode_into(std::string& out, std::string_view payload) {
    const auto n = static_cast<std::uint32_t>(payload.size());
    // Network byte order: most significant byte first.
    out.push_back(static_cast<char>((n >> 24) & 0xFF));
    out.push_back(static_cast<char>((n >> 16) & 0xFF));
    out.push_back(static_cast<char>((n >> 8) & 0xFF));
    out.push_back(static_cast<char>(n & 0xFF));
    out.append(payload);
}

std::string encode(std::string_view payload) {
    std::string out;
    out.reserve(header_size + payload.size());
    encode_into(out, payload);
    return out;
}

void Decoder::feed(std::string_view chunk) {
    while (!chunk.empty() && !failed_) {
        if (header_filled_ < header_size) {
            // The header itself may arrive in pieces: collect it byte by byte.
            header_[header_filled_++] = static_cast<unsigned char>(chunk.front());
            chunk.remove_prefix(1);
            if (header_filled_ < header_size) continue;
            expected_ = (std::uint32_t{header_[0]} << 24) | (std::uint32_t{header_[1]} << 16) |
                        (std::uint32_t{header_[2]} << 8) | std::uint32_t{header_[3]};
            // ANCHOR: limit-check
            // Check the limit *before* reserving anything: a hostile 0xFFFFFFFF
            // header must not make us allocate 4 GiB.
            if (expected_ > max_frame_) {
                failed_ = true;  // (error() says why)
                return;
            }
            payload_.reserve(expected_);
            // ANCHOR_END: limit-check
        }
        const std::size_t take = std::min<std::size_t>(expected_ - payload_.size(), chunk.size());
        payload_.append(chunk.substr(0, take));
        chunk.remove_prefix(take);
        if (payload_.size() == expected_) {
            ready_.push_back(std::exchange(payload_, {}));
            header_filled_ = 0;
        }
    }
}

std::string Decoder::error() const {
    if (!failed_) return {};
    return fmt::format("frame of {} bytes exceeds the limit of {}", expected_, max_frame_);
}

std::optional<std::string> Decoder::next() {
    if (taken_ == ready_.size()) return std::nullopt;
    std::string frame = std::move(ready_[taken_++]);
    if (taken_ == ready_.size()) {  // all taken: start over (keeps the capacity)
        ready_.clear();
        taken_ = 0;
    }
    return frame;
}

}  // namespace frame
