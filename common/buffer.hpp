// A byte queue for output that could not be written yet. With non-blocking
// sockets a send() may take only part of what we offer (the kernel's buffer is
// nearly full); the rest waits here until the socket is writable again.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace net {

class OutputBuffer {
  public:
    void append(std::string_view bytes) { data_.append(bytes); }

    // The bytes still to be written, oldest first.
    std::string_view pending() const { return std::string_view(data_).substr(start_); }

    // `n` bytes from the front were written. Instead of moving the rest to the
    // front after every partial write, we move a read position and compact only
    // once most of the storage is dead.
    void consume(std::size_t n) {
        start_ += n;
        if (start_ == data_.size()) {
            // All written. A burst may have grown the storage to megabytes:
            // give that back rather than keep it for a client that may stay
            // idle from now on (small storage is kept, to be reused).
            if (data_.capacity() > 64 * 1024) {
                data_ = std::string();
            } else {
                data_.clear();
            }
            start_ = 0;
        } else if (start_ > 64 * 1024 && start_ > data_.size() / 2) {
            data_.erase(0, start_);
            start_ = 0;
        }
    }

    std::size_t size() const { return data_.size() - start_; }
    bool empty() const { return size() == 0; }

  private:
    std::string data_;
    std::size_t start_ = 0;  // data_[0, start_) has been written already
};

}  // namespace net
