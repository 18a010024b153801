// The fused cell's entry points (fastlstm/cuda.h): argument checks, the choice of kernel instance, and the
// host-memory helper for tests.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/check.cuh"
#include "common/switch.h"
#include "kernels/cell_pointwise_launch.cuh"

namespace fastlstm::cuda {
namespace {

using detail::bool_switch;
using detail::check;
using detail::DeviceBuffer;

// Byte ranges [a, a+an) and [b, b+bn) share at least one byte.
bool overlaps(const void* a, std::size_t an, const void* b, std::size_t bn) {
  const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
  return x < y + bn && y < x + an;
}

// Argument checks shared by the device and host entry points (they do not dereference anything).
void validate(const CellParams& p) {
  if (p.B < 1) throw std::invalid_argument("fastlstm cell_forward_f32: B must be >= 1, got " + std::to_string(p.B));
  if (p.H < 1) throw std::invalid_argument("fastlstm cell_forward_f32: H must be >= 1, got " + std::to_string(p.H));
  // Every z index and byte count must fit a signed 64-bit / size_t value (only absurd sizes fail).
  const std::uint64_t n = static_cast<std::uint64_t>(p.B) * static_cast<std::uint64_t>(p.H);
  if (n > static_cast<std::uint64_t>(PTRDIFF_MAX) / (16 * sizeof(float)))
    throw std::invalid_argument("fastlstm cell_forward_f32: B*H is too large");
  if (p.z == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: z is null");
  if (p.c_prev == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: c_prev is null");
  if (p.h == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: h is null");
  if (p.c == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: c is null");
  const int given = (p.p_i != nullptr) + (p.p_f != nullptr) + (p.p_o != nullptr);
  if (given != 0 && given != 3)
    throw std::invalid_argument("fastlstm cell_forward_f32: p_i, p_f, p_o: give all three peepholes or none");
  const std::size_t zb = 4 * n * sizeof(float), sb = n * sizeof(float);
  if (p.c != p.c_prev && overlaps(p.c, sb, p.c_prev, sb))
    throw std::invalid_argument("fastlstm cell_forward_f32: c overlaps c_prev without being the same array");
  if (overlaps(p.c, sb, p.z, zb)) throw std::invalid_argument("fastlstm cell_forward_f32: c overlaps z");
  if (overlaps(p.h, sb, p.z, zb) || overlaps(p.h, sb, p.c_prev, sb) || overlaps(p.h, sb, p.c, sb))
    throw std::invalid_argument("fastlstm cell_forward_f32: h overlaps z, c_prev or c");
}

}  // namespace

void cell_forward_f32(const CellParams& p, void* stream) {
  validate(p);
  const auto s = static_cast<cudaStream_t>(stream);
  // The largest z index is 4*B*H - 1: 32-bit indices when that fits.
  const bool small = static_cast<std::uint64_t>(p.B) * static_cast<std::uint64_t>(p.H) * 4 <= UINT32_MAX;
  bool_switch(p.p_i != nullptr, [&](auto peephole) {
    constexpr bool kPeephole = decltype(peephole)::value;
    if (small) {
      detail::launch_cell_forward_f32<kPeephole, std::uint32_t>(p, s);
    } else {
      detail::launch_cell_forward_f32<kPeephole, std::int64_t>(p, s);
    }
  });
}

void cell_forward_host_f32(int B, int H, const float* z, const float* c_prev, const float* p_i, const float* p_f,
                           const float* p_o, float* h, float* c) {
  CellParams hp;
  hp.B = B;
  hp.H = H;
  hp.z = z;
  hp.c_prev = c_prev;
  hp.p_i = p_i;
  hp.p_f = p_f;
  hp.p_o = p_o;
  hp.h = h;
  hp.c = c;
  validate(hp);  // on the host pointers: same rules, checked before any CUDA call
  const std::size_t n = static_cast<std::size_t>(B) * static_cast<std::size_t>(H);
  const bool peephole = p_i != nullptr;
  // One allocation carved into z [B,4H] | c [B,H] | h [B,H] | p_i, p_f, p_o [H] each; c is updated in
  // place (device c_prev == c), which also exercises the aliasing the kernel allows.
  const std::size_t floats = 6 * n + (peephole ? 3 * static_cast<std::size_t>(H) : 0);
  DeviceBuffer buf(floats * sizeof(float));
  float* dz = buf.floats();
  float* dc = dz + 4 * n;
  float* dh = dc + n;
  float* dp = dh + n;
  check(cudaMemcpy(dz, z, 4 * n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  check(cudaMemcpy(dc, c_prev, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  CellParams dp_params;
  dp_params.B = B;
  dp_params.H = H;
  dp_params.z = dz;
  dp_params.c_prev = dc;
  dp_params.h = dh;
  dp_params.c = dc;
  if (peephole) {
    const std::size_t hb = static_cast<std::size_t>(H) * sizeof(float);
    check(cudaMemcpy(dp, p_i, hb, cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(dp + H, p_f, hb, cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(dp + 2 * H, p_o, hb, cudaMemcpyHostToDevice), "cudaMemcpy");
    dp_params.p_i = dp;
    dp_params.p_f = dp + H;
    dp_params.p_o = dp + 2 * H;
  }
  cell_forward_f32(dp_params, nullptr);
  // Device-to-host copies on the legacy default stream wait for the kernel; a fault in it surfaces here.
  check(cudaMemcpy(h, dh, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  check(cudaMemcpy(c, dc, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
}

}  // namespace fastlstm::cuda
