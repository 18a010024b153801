// Memory for the engines: 64-byte aligned buffers (large ones on huge pages, recycled through a small cache),
// a call's workspace carved from one block, and size arithmetic that cannot overflow silently.
#pragma once

#include <cstddef>
#include <limits>
#include <new>

namespace fastlstm {

// Any product or sum past SIZE_MAX becomes std::bad_alloc (MemoryError in Python), never a small wrapped size.
inline std::size_t mul_sz(std::size_t a, std::size_t b) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) throw std::bad_alloc();
  return a * b;
}
inline std::size_t add_sz(std::size_t a, std::size_t b) {
  if (b > std::numeric_limits<std::size_t>::max() - a) throw std::bad_alloc();
  return a + b;
}
inline std::size_t round_up(std::size_t n, std::size_t m) { return (n + m - 1) / m * m; }

// From this size up a buffer's memory is recycled: the last few freed are kept for the next allocations of
// about their size (memory.cpp), so a stream of calls reuses pages already mapped instead of faulting in and
// clearing new ones (from 4 MiB up they also lie on 2 MB boundaries, offered to transparent huge pages).
inline constexpr std::size_t kRecycledBytes = std::size_t(1) << 20;

// A 64-byte aligned byte buffer, zero-initialised unless asked not to be (throws std::bad_alloc).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t bytes, bool zero = true);
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();
  void* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
};

// The layout of a block carved into 64-byte aligned pieces: reserve() every piece, then the total is known
// (a plan answers sizes before anything is allocated).
class Layout {
 public:
  std::size_t reserve(std::size_t bytes) {  // -> offset of the piece
    const std::size_t at = round_up(total_, 64);
    total_ = add_sz(at, bytes);
    return at;
  }
  std::size_t total() const { return total_; }

 private:
  std::size_t total_ = 0;
};

// A call's workspace: one block of a Layout's total. Each calling thread keeps its block for the next call
// (up to kKeepBytes), so a streaming step allocates nothing but its outputs. Pieces are not zeroed.
class Workspace {
 public:
  static constexpr std::size_t kKeepBytes = std::size_t(32) << 20;
  explicit Workspace(std::size_t bytes);
  template <class U>
  U* at(std::size_t offset) const {
    return reinterpret_cast<U*>(base_ + offset);
  }

 private:
  char* base_ = nullptr;
  AlignedBuffer own_;
};

}  // namespace fastlstm
