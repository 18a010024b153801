// The probe's kernels: small, deterministic uses of every primitive whose semantics the execution model
// asserts (mma fragment layouts, ldmatrix, shuffles with masks, votes, grid sync). Compiled twice, by nvcc for
// the GPU and by the host compiler for the model; probe.h checks both against the same expectations, so a
// pass on the H200 confirms the model's reading of the PTX ISA (tools/gpu_check.sh). Fragment indices are
// written here as the ISA's formulas state them, independently of the model's code.
#pragma once

#include <cstdint>

#include "common/primitives.cuh"

namespace fastlstm::probe {

namespace prim = fastlstm::cuda::prim;

// ---- mma: A, B, C in global memory (row-major M x K, K x N, M x N); one warp builds its fragments -------
// m16n8k16 .f16 / .bf16, A element ai (i = 0..7) of a lane: row = groupID for i in {0,1,4,5}, else groupID+8;
// col = threadID_in_group*2 + (i & 1), + 8 for i >= 4. B element bi (i = 0..3): row = threadID_in_group*2 +
// (i & 1), + 8 for i >= 2; col = groupID. C / D element ci (i = 0..3): row = groupID for i < 2, else +8;
// col = threadID_in_group*2 + (i & 1). Two elements per .b32 register, the lower index in the low half.
template <bool kBf16>
__global__ void mma_k16_kernel(const std::uint16_t* A, const std::uint16_t* B, const float* C, float* D) {
  const unsigned lane = prim::lane_id(), g = lane >> 2, t = lane % 4;
  std::uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  for (unsigned i = 0; i < 8; ++i) {
    const unsigned row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
    const unsigned col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
    a[i / 2] |= static_cast<std::uint32_t>(A[row * 16 + col]) << (16 * (i & 1));
  }
  for (unsigned i = 0; i < 4; ++i) {
    const unsigned row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
    b[i / 2] |= static_cast<std::uint32_t>(B[row * 8 + g]) << (16 * (i & 1));
  }
  float c[4], d[4];
  for (unsigned i = 0; i < 4; ++i) c[i] = C[(i < 2 ? g : g + 8) * 8 + t * 2 + (i & 1)];
  if constexpr (kBf16) {
    prim::mma_m16n8k16_bf16(d, a, b, c);
  } else {
    prim::mma_m16n8k16_f16(d, a, b, c);
  }
  for (unsigned i = 0; i < 4; ++i) D[(i < 2 ? g : g + 8) * 8 + t * 2 + (i & 1)] = d[i];
}

// m16n8k8 .tf32: ai (i = 0..3): row = groupID for a0, a2, else +8; col = threadID_in_group for a0, a1, else
// +4. bi (i = 0..1): row = threadID_in_group (+4 for b1); col = groupID. C / D as above.
__global__ void mma_tf32_kernel(const std::uint32_t* A, const std::uint32_t* B, const float* C, float* D) {
  const unsigned lane = prim::lane_id(), g = lane >> 2, t = lane % 4;
  std::uint32_t a[4], b[2];
  for (unsigned i = 0; i < 4; ++i) a[i] = A[((i == 0 || i == 2) ? g : g + 8) * 8 + (i < 2 ? t : t + 4)];
  for (unsigned i = 0; i < 2; ++i) b[i] = B[(i == 0 ? t : t + 4) * 8 + g];
  float c[4], d[4];
  for (unsigned i = 0; i < 4; ++i) c[i] = C[(i < 2 ? g : g + 8) * 8 + t * 2 + (i & 1)];
  prim::mma_m16n8k8_tf32(d, a, b, c);
  for (unsigned i = 0; i < 4; ++i) D[(i < 2 ? g : g + 8) * 8 + t * 2 + (i & 1)] = d[i];
}

// ---- ldmatrix: four 8x8 b16 matrices in shared memory, rows stored in a scrambled order ------------------
// Row r of matrix m lives at slot perm(8m + r); lane i passes the address of row i % 8 of matrix i / 8.
// out[lane * 12 + k]: x4 registers (k 0..3), x4.trans (4..7), x2 (8, 9), x1 (10), x2.trans (11).
__device__ __host__ inline unsigned ldm_slot(unsigned row32) { return (row32 * 13 + 5) % 32; }

__global__ void ldmatrix_kernel(const std::uint16_t* M, std::uint32_t* out) {
  std::uint16_t* s = prim::dynamic_smem<std::uint16_t>();  // 32 rows x 8 halves, 16 bytes each
  const unsigned lane = prim::lane_id();
  for (unsigned c = 0; c < 8; ++c) s[ldm_slot(lane) * 8 + c] = M[lane * 8 + c];
  __syncwarp();
  const std::uint16_t* row = s + ldm_slot(lane) * 8;
  std::uint32_t r4[4], t4[4], r2[2], r1[1], t2[2];
  prim::ldmatrix_x4(r4, row);
  prim::ldmatrix_x4_trans(t4, row);
  prim::ldmatrix_x2(r2, row);
  prim::ldmatrix_x1(r1, row);
  prim::ldmatrix_x2_trans(t2, row);
  std::uint32_t* o = out + lane * 12;
  for (int j = 0; j < 4; ++j) {
    o[j] = r4[j];
    o[4 + j] = t4[j];
  }
  o[8] = r2[0];
  o[9] = r2[1];
  o[10] = r1[0];
  o[11] = t2[1];
}

// ---- Shuffles and votes, with partial masks and widths -----------------------------------------------
// out[case * 32 + lane]; inputs are lane-dependent so every source lane is identifiable.
constexpr int kShuffleCases = 12;
__global__ void shuffle_kernel(int* out) {
  const unsigned lane = prim::lane_id();
  const int v = 100 + static_cast<int>(lane);
  const unsigned full = 0xffffffffu, lower = 0x0000ffffu, upper = 0xffff0000u;
  int* o = out + lane;
  o[0 * 32] = __shfl_sync(full, v, static_cast<int>((lane * 5 + 3) % 37));
  o[1 * 32] = __shfl_sync(full, v, static_cast<int>(lane + 3), 8);
  o[2 * 32] = __shfl_up_sync(full, v, 3);
  o[3 * 32] = __shfl_up_sync(full, v, 2, 4);
  o[4 * 32] = __shfl_down_sync(full, v, 5);
  o[5 * 32] = __shfl_down_sync(full, v, 3, 16);
  o[6 * 32] = __shfl_xor_sync(full, v, 9);
  o[7 * 32] = __shfl_xor_sync(full, v, 16, 16);  // earlier segment readable, later one not
  o[8 * 32] = __shfl_xor_sync(lane < 16 ? lower : upper, v, 4);
  o[9 * 32] = static_cast<int>(__ballot_sync(full, (lane * 7) % 5 < 2));
  o[10 * 32] = lane < 16 ? static_cast<int>(__ballot_sync(lower, lane % 3 == 0)) : __any_sync(upper, lane == 30);
  o[11 * 32] = static_cast<int>(__reduce_add_sync(full, lane * lane));
}

// ---- Grid sync: every block adds to a counter, syncs, and checks it saw everyone's addition --------------
__global__ void grid_sync_kernel(unsigned* counter, unsigned* errors, int steps) {
  for (int s = 0; s < steps; ++s) {
    if (threadIdx.x == 0) atomicAdd(counter, 1u);
    prim::grid_sync();
    if (threadIdx.x == 0) {
      const unsigned want = gridDim.x * static_cast<unsigned>(s + 1);
      if (atomicAdd(counter, 0u) != want) atomicAdd(errors, 1u);
    }
    prim::grid_sync();
  }
}

}  // namespace fastlstm::probe
