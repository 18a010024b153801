// One step's recurrent GEMM inside a block of the persistent recurrence (recurrence.cuh): for the block's
// `rows` rows of W_hh (gate-major: r = gate * uact + u) and the `nb` staged batch rows hs [nb][R] (operand
// format), acc[n * ld + r] = W_hh[r] . hs[n]. Two ways, chosen by the operand format at compile time:
//   SIMT (fp32):            a warp takes one row and 4 batch rows; lanes over k, a shuffle reduction.
//   tensor cores (tf32, bf16, fp16): a warp takes one 16 x 8 tile (rows x batch rows) and runs mma.sync over
//                           k (16 per mma, 8 for tf32) with fp32 accumulators; W_hh is the row-major A, hs the
//                           column-major B (hs[n][k] is B[k][n]). Rows, batch rows and k past the ends are zeros.
// Device code only, through common/primitives.cuh.
#pragma once

#include <cstdint>

#include "common/primitives.cuh"
#include "kernels/operand.cuh"

namespace fastlstm::cuda::detail {

constexpr int kRecRowsPerWarp = 4;  // batch rows per SIMT warp task (register tile)

template <Operand Op>
inline constexpr bool kRecTensorCores = Op != Operand::kF32;

// Row r of the block's W_hh slice: row(r) -> const Storage*.
template <Operand Op, class RowOf>
__device__ inline void gates_simt(RowOf row, const typename OperandTraits<Op>::Storage* hs, int nb, int R, int rows,
                                  float* acc, int ld, int warp, int nwarps, int lane) {
  using Tr = OperandTraits<Op>;
  const int quads = (nb + kRecRowsPerWarp - 1) / kRecRowsPerWarp;
  for (int o = warp; o < quads * rows; o += nwarps) {
    const int qd = o / rows, r = o - qd * rows, bq = qd * kRecRowsPerWarp;
    const auto* wr = row(r);
    float v[kRecRowsPerWarp] = {};
    for (int k = lane; k < R; k += 32) {
      const float wk = Tr::load(wr[k]);
      for (int i = 0; i < kRecRowsPerWarp; ++i) {
        if (bq + i < nb) v[i] += wk * Tr::load(hs[(bq + i) * R + k]);
      }
    }
    for (int i = 0; i < kRecRowsPerWarp; ++i) {
      for (int off = 16; off > 0; off >>= 1) v[i] += __shfl_xor_sync(0xffffffffu, v[i], off);
      if (lane == 0 && bq + i < nb) acc[(bq + i) * ld + r] = v[i];
    }
  }
}

template <Operand Op, class RowOf>
__device__ inline void gates_mma(RowOf row, const typename OperandTraits<Op>::Storage* hs, int nb, int R, int rows,
                                 float* acc, int ld, int warp, int nwarps, int lane) {
  using Storage = typename OperandTraits<Op>::Storage;
  const int g = lane / 4, t = lane % 4;
  const int mtiles = (rows + 15) / 16, ntiles = (nb + 7) / 8;
  for (int o = warp; o < mtiles * ntiles; o += nwarps) {
    const int m0 = (o % mtiles) * 16, n0 = (o / mtiles) * 8;
    // This lane's two A rows and one B column; out-of-range ones read as zeros.
    const int ma = m0 + g, mb = m0 + g + 8, n = n0 + g;
    const Storage* wa = ma < rows ? row(ma) : nullptr;
    const Storage* wb = mb < rows ? row(mb) : nullptr;
    const Storage* hn = n < nb ? hs + n * R : nullptr;
    const auto at = [R](const Storage* base, int k) -> std::uint32_t {
      if (base == nullptr || k >= R) return 0u;
      if constexpr (sizeof(Storage) == 2) {
        return base[k];
      } else {
        return prim::float_bits(base[k]);
      }
    };
    const auto pair = [&at](const Storage* base, int k) { return at(base, k) | (at(base, k + 1) << 16); };
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if constexpr (Op == Operand::kTF32) {
      for (int k = 0; k < R; k += 8) {  // a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (t, g), b1 (t+4, g)
        const std::uint32_t a[4] = {at(wa, k + t), at(wb, k + t), at(wa, k + t + 4), at(wb, k + t + 4)};
        const std::uint32_t b[2] = {at(hn, k + t), at(hn, k + t + 4)};
        prim::mma_m16n8k8_tf32(d, a, b, d);
      }
    } else {
      for (int k = 0; k < R; k += 16) {  // A: rows g / g+8, columns 2t(+1) and 2t+8(+1); B: rows 2t(+1), 2t+8(+1)
        const std::uint32_t a[4] = {pair(wa, k + 2 * t), pair(wb, k + 2 * t), pair(wa, k + 2 * t + 8),
                                    pair(wb, k + 2 * t + 8)};
        const std::uint32_t b[2] = {pair(hn, k + 2 * t), pair(hn, k + 2 * t + 8)};
        if constexpr (Op == Operand::kBF16) {
          prim::mma_m16n8k16_bf16(d, a, b, d);
        } else {
          prim::mma_m16n8k16_f16(d, a, b, d);
        }
      }
    }
    for (int i = 0; i < 4; ++i) {  // d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1)
      const int m = m0 + g + 8 * (i >> 1), nn = n0 + 2 * t + (i & 1);
      if (m < rows && nn < nb) acc[nn * ld + m] = d[i];
    }
  }
}

// The product of the precision: tensor cores for tf32 / bf16 / fp16, FMA for fp32 (arguments as above).
template <Operand Op, class RowOf>
__device__ inline void gates_product(RowOf row, const typename OperandTraits<Op>::Storage* hs, int nb, int R, int rows,
                                     float* acc, int ld, int warp, int nwarps, int lane) {
  if constexpr (kRecTensorCores<Op>) {
    gates_mma<Op>(row, hs, nb, R, rows, acc, ld, warp, nwarps, lane);
  } else {
    gates_simt<Op>(row, hs, nb, R, rows, acc, ld, warp, nwarps, lane);
  }
}

}  // namespace fastlstm::cuda::detail
