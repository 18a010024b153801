// A test-only kernel for the static checks' self-test (tools/cuda_static_check.py): it uses every
// tensor-core and async-copy primitive, so its SASS must show HMMA (mma.sync), LDSM (ldmatrix) and LDGSTS
// (cp.async) on sm_80 and sm_90a. That proves the instruction asserts can see what they look for before any
// bf16 / fp16 engine kernel relies on them. Never part of the library.
#include <cstdint>

#include "common/primitives.cuh"

namespace fastlstm::cuda::selftest {

namespace prim = fastlstm::cuda::prim;

__global__ void __launch_bounds__(32) tensor_core_selftest(const std::uint16_t* a_tile, const float* c, float* d) {
  __shared__ __align__(16) std::uint16_t tile[32 * 8];
  const unsigned lane = prim::lane_id();
  prim::cp_async_16(tile + lane * 8, a_tile + lane * 8);
  prim::cp_async_commit();
  prim::cp_async_wait<0>();
  __syncwarp();
  std::uint32_t a[4], b[2];
  prim::ldmatrix_x4(a, tile + lane * 8);
  b[0] = a[0] ^ a[1];
  b[1] = a[2] ^ a[3];
  float acc[4] = {c[lane], c[lane + 32], c[lane + 64], c[lane + 96]};
  float bf[4], hf[4], tf[4];
  prim::mma_m16n8k16_bf16(bf, a, b, acc);
  prim::mma_m16n8k16_f16(hf, a, b, bf);
  const std::uint32_t ta[4] = {prim::to_tf32(hf[0]), prim::to_tf32(hf[1]), prim::to_tf32(hf[2]), prim::to_tf32(hf[3])};
  const std::uint32_t tb[2] = {prim::to_tf32(hf[0] + hf[1]), prim::to_tf32(hf[2] + hf[3])};
  prim::mma_m16n8k8_tf32(tf, ta, tb, hf);
  for (int i = 0; i < 4; ++i) d[lane + 32 * i] = tf[i];
}

}  // namespace fastlstm::cuda::selftest
