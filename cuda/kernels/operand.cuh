// The operand formats of the CUDA engine's products: what a weight and an activation are rounded to before
// they are multiplied (the sum is always fp32). One trait per precision, shared by the input projection and
// the recurrence, host and device alike (the packer rounds weights with the same functions the kernels use
// for activations, so the execution model and the GPU see the same operands).
//   f32   fp32 x fp32 (the reference math)         tf32  10-bit mantissas, round to nearest, ties away
//   bf16  8-bit mantissas, round to nearest even   f16   IEEE half, round to nearest even
// Storage: bf16 / f16 weights are kept as 16-bit words (half the shared memory of fp32: more of W_hh stays on
// chip); tf32 weights are stored as floats already rounded.
#pragma once

#include <cstdint>

#include "common/primitives.cuh"

namespace fastlstm::cuda::detail {

enum class Operand : int { kF32 = 0, kTF32 = 1, kBF16 = 2, kF16 = 3 };

template <Operand>
struct OperandTraits;

template <>
struct OperandTraits<Operand::kF32> {
  using Storage = float;
  __host__ __device__ static float round(float x) { return x; }
  __host__ __device__ static Storage store(float x) { return x; }
  __host__ __device__ static float load(Storage s) { return s; }
};

template <>
struct OperandTraits<Operand::kTF32> {
  using Storage = float;
  __host__ __device__ static float round(float x) { return prim::bits_float(prim::tf32_bits(x)); }
  __host__ __device__ static Storage store(float x) { return round(x); }
  __host__ __device__ static float load(Storage s) { return s; }
};

template <>
struct OperandTraits<Operand::kBF16> {
  using Storage = std::uint16_t;
  __host__ __device__ static float round(float x) { return prim::bf16_float(prim::bf16_bits(x)); }
  __host__ __device__ static Storage store(float x) { return prim::bf16_bits(x); }
  __host__ __device__ static float load(Storage s) { return prim::bf16_float(s); }
};

template <>
struct OperandTraits<Operand::kF16> {
  using Storage = std::uint16_t;
  __host__ __device__ static float round(float x) { return prim::f16_float(prim::f16_bits(x)); }
  __host__ __device__ static Storage store(float x) { return prim::f16_bits(x); }
  __host__ __device__ static float load(Storage s) { return prim::f16_float(s); }
};

}  // namespace fastlstm::cuda::detail
