// Aligned buffers, the cache of recently freed big blocks, per-thread workspaces and the check of what
// memory the machine can still back.
#include "common/memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "fastlstm/engine.h"

namespace fastlstm {
namespace {

// Large buffers on 2 MB boundaries, offered to transparent huge pages: a training call's saved state is
// tens of MB written once, and 4 KB page faults would cost more than the writes.
constexpr std::size_t kHugeFrom = std::size_t(4) << 20, kHuge = std::size_t(2) << 20;
std::size_t capacity_of(std::size_t bytes) {
  const std::size_t align = bytes >= kHugeFrom ? kHuge : 64;
  const std::size_t rounded = (bytes + align - 1) / align * align;
  if (rounded < bytes) throw std::bad_alloc();
  return rounded;
}

// The last few buffers of 1 MiB or more freed (at most 256 MB each, 512 MB together), each kept for the next allocation
// of about its size: a training call allocates and frees a saved state and a backward workspace, and its
// outputs (y, dx, the weight gradients) live in such buffers too (bindings' new_array); fresh pages cost a
// fault and a clear each (~4% of a training step measured at B=16, H=256; 6% of the samples of a
// bidirectional two-layer one, when only one buffer was kept and the two sizes kept evicting each other).
// Sixteen slots: a training step frees about eight such buffers, a two-layer bidirectional one more (T=100
// B=64 H=512 on Zen 5: 166.6 ms against 174-184 ms with its outputs in fresh numpy memory).
class BigBlockCache {
 public:
  void* take(std::size_t capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    int best = -1;
    for (int i = 0; i < kSlots; ++i) {
      const std::size_t c = slot_[i].cap;
      if (slot_[i].p && c >= capacity && c - capacity <= capacity / 4 && (best < 0 || c < slot_[best].cap)) best = i;
    }
    if (best < 0) return nullptr;
    void* q = slot_[best].p;
    total_ -= slot_[best].cap;
    slot_[best] = Slot();
    return q;
  }
  void give(void* q, std::size_t capacity) {
    if (capacity > kMaxBlock) return std::free(q);
    void* evicted[kSlots] = {};
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Room by age: the oldest blocks go first until this one fits in a free slot and the total.
      for (int n = 0; n < kSlots; ++n) {
        int free_slot = -1, oldest = -1;
        for (int i = 0; i < kSlots; ++i) {
          if (!slot_[i].p)
            free_slot = i;
          else if (oldest < 0 || slot_[i].age < slot_[oldest].age)
            oldest = i;
        }
        if (free_slot >= 0 && total_ + capacity <= kMaxTotal) {
          slot_[free_slot] = Slot{q, capacity, ++clock_};
          total_ += capacity;
          q = nullptr;
          break;
        }
        evicted[n] = slot_[oldest].p;
        total_ -= slot_[oldest].cap;
        slot_[oldest] = Slot();
      }
    }
    std::free(q);  // null unless it could not be kept
    for (void* e : evicted) std::free(e);
  }

 private:
  static constexpr int kSlots = 16;
  static constexpr std::size_t kMaxBlock = std::size_t(256) << 20, kMaxTotal = std::size_t(512) << 20;
  struct Slot {
    void* p = nullptr;
    std::size_t cap = 0;
    unsigned long age = 0;
  };
  std::mutex mu_;
  Slot slot_[kSlots];
  std::size_t total_ = 0;
  unsigned long clock_ = 0;
};
BigBlockCache& big_blocks() {
  static BigBlockCache* cache = new BigBlockCache();  // never destroyed: freed buffers may come late
  return *cache;
}

void release(void* p, std::size_t bytes) {
  if (p && bytes >= kRecycledBytes)
    big_blocks().give(p, capacity_of(bytes));
  else
    std::free(p);
}

}  // namespace

AlignedBuffer::AlignedBuffer(std::size_t bytes, bool zero) : n_(bytes) {
  if (bytes == 0) return;
  const std::size_t capacity = capacity_of(bytes);
  if (bytes >= kRecycledBytes) p_ = big_blocks().take(capacity);
  if (!p_) {
    p_ = std::aligned_alloc(bytes >= kHugeFrom ? kHuge : 64, capacity);
    if (!p_) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    if (bytes >= kHugeFrom) madvise(p_, capacity, MADV_HUGEPAGE);
#endif
  }
  if (zero) std::memset(p_, 0, capacity);
}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    release(p_, n_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() { release(p_, n_); }

Workspace::Workspace(std::size_t bytes) {
  thread_local AlignedBuffer kept;
  if (bytes <= kKeepBytes) {
    if (kept.size() < bytes) kept = AlignedBuffer(std::max(bytes, std::size_t(64) << 10), false);
    base_ = static_cast<char*>(kept.data());
  } else {
    own_ = AlignedBuffer(bytes, false);  // every piece is written before it is read
    base_ = static_cast<char*>(own_.data());
  }
}

namespace {

// Bytes the kernel says can still be had (MemAvailable + SwapFree), or 0 where unknown.
std::size_t available_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long avail = 0, swap = 0, kb = 0;
  bool found = false;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
      avail = kb;
      found = true;
    } else if (std::sscanf(line, "SwapFree: %llu kB", &kb) == 1) {
      swap = kb;
    }
  }
  std::fclose(f);
  return found ? static_cast<std::size_t>((avail + swap) * 1024) : 0;
}

std::string gib(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1u << 30));
  return buf;
}

}  // namespace

void check_available_memory(std::size_t bytes, const char* what) {
  constexpr std::size_t kCheckAbove = std::size_t(64) << 20;
  if (bytes < kCheckAbove) return;
  const std::size_t avail = available_memory();
  if (avail != 0 && bytes > avail)
    throw OutOfMemory(std::string(what) + ": needs " + gib(bytes) + ", " + gib(avail) + " available");
}

}  // namespace fastlstm
