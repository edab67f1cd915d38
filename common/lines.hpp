// Splits a byte stream into lines -- sans-I/O, like frame::Decoder. A read
// returns bytes, not lines: one line may span two reads, and one read may hold
// many lines. Feed it whatever a read returned, then take the complete lines.
//
//   lines.feed(bytes);
//   while (auto line = lines.next()) send(*line);
//   ...at the end of input: if (auto last = lines.rest()) send(*last);
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace lines {

class Splitter {
  public:
    void feed(std::string_view bytes) { buffer_.append(bytes); }

    // The next complete line, without its newline; nullopt until one is in.
    std::optional<std::string> next() {
        const std::size_t newline = buffer_.find('\n', start_);
        if (newline == std::string::npos) {
            buffer_.erase(0, start_);  // keep only the unfinished line
            start_ = 0;
            return std::nullopt;
        }
        std::string line = buffer_.substr(start_, newline - start_);
        start_ = newline + 1;
        return line;
    }

    // At the end of input: a last line that had no newline, if there is one.
    std::optional<std::string> rest() {
        if (start_ == buffer_.size()) return std::nullopt;
        std::string line = buffer_.substr(start_);
        buffer_.clear();
        start_ = 0;
        return line;
    }

  private:
    std::string buffer_;
    std::size_t start_ = 0;  // buffer_[0, start_) has been handed out already
};

}  // namespace lines
