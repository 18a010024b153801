// CUDA's device built-ins on the execution model: __syncthreads and its reductions, __syncwarp, the
// __shfl_*_sync family, votes, __reduce_*_sync, atomics and fences, with the semantics of the CUDA
// Programming Guide and the PTX ISA (shfl.sync's pseudo-code for the source lane and the clamp). Misuse that
// hardware leaves undefined is a fault here: a lane outside its own mask, reading a lane outside the mask,
// a mask naming lanes the warp does not have. Test-only.
#pragma once

#include <atomic>
#include <cstring>
#include <source_location>
#include <string>
#include <type_traits>

#include "emu/runtime.h"

namespace fastlstm::emu::detail {

using Loc = std::source_location;

template <class T>
std::uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "a warp collective moves at most 8 bytes");
  std::uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <class T>
T from_bits(std::uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

inline void block_barrier(const char* what, int pred, Loc loc) {
  Thread& t = current();
  t.in[0].store(pred != 0, std::memory_order_relaxed);
  hb_release(t.block->hb_barrier);
  block_on(Wait::barrier, what, loc);
  hb_acquire(t.block->hb_barrier);
}

// shfl.sync per the PTX ISA: c = ((32 - width) << 8) | clamp, clamp 0 for .up and 31 otherwise.
enum ShflMode : unsigned { kIdx = 0, kUp = 1, kDown = 2, kBfly = 3 };

inline void resolve_shfl(Thread* const* lanes, unsigned mask, unsigned aux, std::string& err) {
  const unsigned mode = aux & 3u, width = (aux >> 2) & 63u;
  const unsigned segmask = (32u - width) & 31u, clamp = mode == kUp ? 0u : 31u;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (lanes[lane] == nullptr) continue;
    const unsigned b = static_cast<unsigned>(lanes[lane]->in[1].load(std::memory_order_relaxed)) & 31u;
    const int max_lane = static_cast<int>((lane & segmask) | (clamp & ~segmask));
    const int min_lane = static_cast<int>(lane & segmask);
    int j = 0;
    bool p = false;
    switch (mode) {
      case kUp:
        j = static_cast<int>(lane) - static_cast<int>(b);
        p = j >= max_lane;
        break;
      case kDown:
        j = static_cast<int>(lane + b);
        p = j <= max_lane;
        break;
      case kBfly:
        j = static_cast<int>(lane ^ b);
        p = j <= max_lane;
        break;
      default:
        j = min_lane | static_cast<int>(b & ~segmask);
        p = j <= max_lane;
        break;
    }
    if (!p) j = static_cast<int>(lane);
    if (((mask >> j) & 1u) == 0) {
      err = "warp shuffle: lane " + std::to_string(lane) + " reads lane " + std::to_string(j) +
            ", which is not in the mask (an undefined value on hardware)";
      return;
    }
    lanes[lane]->out[0].store(lanes[j]->in[0].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

template <class T>
T shfl(const char* what, unsigned mode, unsigned mask, T var, int b, int width, Loc loc) {
  Thread& t = current();
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    fault(std::string(what) + ": width must be a power of 2 in [1, 32], got " + std::to_string(width), loc);
  }
  t.in[0].store(to_bits(var), std::memory_order_relaxed);
  t.in[1].store(static_cast<unsigned>(b), std::memory_order_relaxed);
  warp_collective(what, mask, resolve_shfl, mode | (static_cast<unsigned>(width) << 2), loc);
  return from_bits<T>(t.out[0].load(std::memory_order_relaxed));
}

// Votes and reductions: in[0] the lane's operand; aux selects the operation.
enum VoteOp : unsigned { kBallot, kAny, kAll, kSum, kMin, kMax, kMinS, kMaxS, kAnd, kOr, kXor, kSync };

inline void resolve_vote(Thread* const* lanes, unsigned /*mask*/, unsigned aux, std::string& /*err*/) {
  std::uint64_t ballot = 0, sum = 0, mn = ~0u, mx = 0, a = ~0ull, o = 0, x = 0;
  std::int64_t smn = INT32_MAX, smx = INT32_MIN;
  for (unsigned l = 0; l < 32; ++l) {
    if (lanes[l] == nullptr) continue;
    const std::uint64_t v = lanes[l]->in[0].load(std::memory_order_relaxed) & 0xffffffffu;
    const auto sv = static_cast<std::int64_t>(static_cast<std::int32_t>(v));
    ballot |= static_cast<std::uint64_t>(v != 0) << l;
    sum += v;
    mn = std::min(mn, v);
    mx = std::max(mx, v);
    smn = std::min(smn, sv);
    smx = std::max(smx, sv);
    a &= v;
    o |= v;
    x ^= v;
  }
  std::uint64_t r = 0;
  switch (aux) {
    case kBallot:
      r = ballot;
      break;
    case kAny:
      r = ballot != 0;
      break;
    case kAll:
      r = 1;
      for (unsigned l = 0; l < 32; ++l) {
        if (lanes[l] != nullptr && ((ballot >> l) & 1u) == 0) r = 0;
      }
      break;
    case kSum:
      r = sum & 0xffffffffu;
      break;
    case kMin:
      r = mn;
      break;
    case kMax:
      r = mx;
      break;
    case kMinS:
      r = static_cast<std::uint32_t>(smn);
      break;
    case kMaxS:
      r = static_cast<std::uint32_t>(smx);
      break;
    case kAnd:
      r = a & 0xffffffffu;
      break;
    case kOr:
      r = o;
      break;
    case kXor:
      r = x;
      break;
    default:
      break;
  }
  for (unsigned l = 0; l < 32; ++l) {
    if (lanes[l] != nullptr) lanes[l]->out[0].store(r, std::memory_order_relaxed);
  }
}

inline unsigned vote(const char* what, VoteOp op, unsigned mask, unsigned v, Loc loc) {
  Thread& t = current();
  t.in[0].store(v, std::memory_order_relaxed);
  warp_collective(what, mask, resolve_vote, op, loc);
  return static_cast<unsigned>(t.out[0].load(std::memory_order_relaxed));
}

// A scheduling point before every atomic: a spin-wait on an atomic lets the other threads run.
template <class T>
std::atomic_ref<T> atomic_at(T* p, Loc loc) {
  yield_point("an atomic", loc);
  return std::atomic_ref<T>(*p);
}

}  // namespace fastlstm::emu::detail

// ---- Block barriers ------------------------------------------------------------------------------------
inline void __syncthreads(std::source_location loc = std::source_location::current()) {
  fastlstm::emu::detail::block_barrier("__syncthreads", 0, loc);
}
inline int __syncthreads_count(int pred, std::source_location loc = std::source_location::current()) {
  fastlstm::emu::detail::block_barrier("__syncthreads_count", pred, loc);
  return static_cast<int>(fastlstm::emu::detail::current().out[0].load(std::memory_order_relaxed));
}
inline int __syncthreads_and(int pred, std::source_location loc = std::source_location::current()) {
  namespace d = fastlstm::emu::detail;
  d::block_barrier("__syncthreads_and", pred, loc);
  const d::Thread& t = d::current();  // out[1]: how many threads reached the barrier
  return t.out[0].load(std::memory_order_relaxed) == t.out[1].load(std::memory_order_relaxed);
}
inline int __syncthreads_or(int pred, std::source_location loc = std::source_location::current()) {
  fastlstm::emu::detail::block_barrier("__syncthreads_or", pred, loc);
  return fastlstm::emu::detail::current().out[0].load(std::memory_order_relaxed) != 0;
}

// ---- Warp synchronisation, shuffles, votes -----------------------------------------------------------
// __syncwarp orders memory among the lanes of its mask (each releases its own variable and acquires all).
inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location loc = std::source_location::current()) {
  namespace d = fastlstm::emu::detail;
  d::Thread& t = d::current();
  d::hb_release(t.hb);
  d::vote("__syncwarp", d::kSync, mask, 0, loc);
  for (unsigned l = 0; l < 32; ++l) {
    if ((mask >> l) & 1u) d::hb_acquire(d::current_block().threads[t.warp * 32 + l]->hb);
  }
}

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
              std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::shfl("__shfl_sync", fastlstm::emu::detail::kIdx, mask, var, src_lane, width, loc);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::shfl("__shfl_up_sync", fastlstm::emu::detail::kUp, mask, var, static_cast<int>(delta),
                                     width, loc);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::shfl("__shfl_down_sync", fastlstm::emu::detail::kDown, mask, var,
                                     static_cast<int>(delta), width, loc);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::shfl("__shfl_xor_sync", fastlstm::emu::detail::kBfly, mask, var, lane_mask, width, loc);
}

inline unsigned __ballot_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::vote("__ballot_sync", fastlstm::emu::detail::kBallot, mask, pred != 0, loc);
}
inline int __any_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
  return static_cast<int>(fastlstm::emu::detail::vote("__any_sync", fastlstm::emu::detail::kAny, mask, pred != 0, loc));
}
inline int __all_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
  return static_cast<int>(fastlstm::emu::detail::vote("__all_sync", fastlstm::emu::detail::kAll, mask, pred != 0, loc));
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v, std::source_location l = std::source_location::current()) {
  return fastlstm::emu::detail::vote("__reduce_add_sync", fastlstm::emu::detail::kSum, mask, v, l);
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v, std::source_location l = std::source_location::current()) {
  return fastlstm::emu::detail::vote("__reduce_min_sync", fastlstm::emu::detail::kMin, mask, v, l);
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v, std::source_location l = std::source_location::current()) {
  return fastlstm::emu::detail::vote("__reduce_max_sync", fastlstm::emu::detail::kMax, mask, v, l);
}
inline int __reduce_min_sync(unsigned mask, int v, std::source_location l = std::source_location::current()) {
  return static_cast<int>(fastlstm::emu::detail::vote("__reduce_min_sync", fastlstm::emu::detail::kMinS, mask,
                                                      static_cast<unsigned>(v), l));
}
inline int __reduce_max_sync(unsigned mask, int v, std::source_location l = std::source_location::current()) {
  return static_cast<int>(fastlstm::emu::detail::vote("__reduce_max_sync", fastlstm::emu::detail::kMaxS, mask,
                                                      static_cast<unsigned>(v), l));
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned v, std::source_location l = std::source_location::current()) {
  return fastlstm::emu::detail::vote("__reduce_and_sync", fastlstm::emu::detail::kAnd, mask, v, l);
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned v, std::source_location l = std::source_location::current()) {
  return fastlstm::emu::detail::vote("__reduce_or_sync", fastlstm::emu::detail::kOr, mask, v, l);
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v, std::source_location l = std::source_location::current()) {
  return fastlstm::emu::detail::vote("__reduce_xor_sync", fastlstm::emu::detail::kXor, mask, v, l);
}

// The lanes of the warp that have not exited. (On hardware: the lanes converged at this instruction, which the
// model, running one thread at a time, cannot know; code must not depend on it beyond CUDA's guarantees.)
inline unsigned __activemask() {
  namespace d = fastlstm::emu::detail;
  const d::Thread& t = d::current();
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l) {
    const std::size_t i = static_cast<std::size_t>(t.warp) * 32 + l;
    if (i < t.block->threads.size() && t.block->threads[i]->wait.load(std::memory_order_relaxed) != d::Wait::exited)
      m |= 1u << l;
  }
  return m;
}

inline void __nanosleep(unsigned /*ns*/, std::source_location loc = std::source_location::current()) {
  fastlstm::emu::detail::yield_point("__nanosleep", loc);
}

// ---- Atomics (relaxed, as CUDA's atomicX; the _block / _system scopes behave the same here) ------------
template <class T>
T atomicAdd(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::atomic_at(p, loc).fetch_add(v, std::memory_order_relaxed);
}
template <class T>
T atomicSub(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::atomic_at(p, loc).fetch_sub(v, std::memory_order_relaxed);
}
template <class T>
T atomicExch(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::atomic_at(p, loc).exchange(v, std::memory_order_relaxed);
}
template <class T>
T atomicCAS(T* p, std::type_identity_t<T> compare, std::type_identity_t<T> v,
            std::source_location loc = std::source_location::current()) {
  fastlstm::emu::detail::atomic_at(p, loc).compare_exchange_strong(compare, v, std::memory_order_relaxed);
  return compare;  // the old value either way
}
template <class T>
T atomicMin(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  auto a = fastlstm::emu::detail::atomic_at(p, loc);
  T old = a.load(std::memory_order_relaxed);
  while (v < old && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <class T>
T atomicMax(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  auto a = fastlstm::emu::detail::atomic_at(p, loc);
  T old = a.load(std::memory_order_relaxed);
  while (old < v && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <class T>
T atomicAnd(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::atomic_at(p, loc).fetch_and(v, std::memory_order_relaxed);
}
template <class T>
T atomicOr(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::atomic_at(p, loc).fetch_or(v, std::memory_order_relaxed);
}
template <class T>
T atomicXor(T* p, std::type_identity_t<T> v, std::source_location loc = std::source_location::current()) {
  return fastlstm::emu::detail::atomic_at(p, loc).fetch_xor(v, std::memory_order_relaxed);
}

// Fences. ThreadSanitizer does not model standalone fences (GCC rejects them under -fsanitize=thread), so a
// protocol built on fences reads as a race there: publish with prim::st_release_gpu / prim::ld_acquire_gpu.
inline void __threadfence() {
#if !defined(FASTLSTM_EMU_TSAN)
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}
inline void __threadfence_block() { __threadfence(); }
inline void __threadfence_system() { __threadfence(); }
