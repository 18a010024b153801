// The LSTM cell's math for one element, written once for host and device (__host__ __device__), so host
// code checks it without a GPU and every kernel shares it.
#pragma once

#include <cmath>

#include "common/primitives.cuh"  // the CUDA dialect under a host compiler (the execution model)

namespace fastlstm::cuda::detail {

// sigmoid without overflow for any x: exp of -|x| lies in (0, 1], and for x < 0 the result e/(1+e) keeps
// full relative accuracy down to the denormals (1 - 1/(1+e^-x) would cancel). NaN propagates.
__host__ __device__ inline float sigmoid_f32(float x) {
  const float e = expf(-fabsf(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

// One (b, j) element of a step:
//   peephole: z_i += p_i * c_prev;  z_f += p_f * c_prev
//   c = sigmoid(z_f) * c_prev + sigmoid(z_i) * tanh(z_g);  peephole: z_o += p_o * c;  h = sigmoid(z_o) * tanh(c)
template <bool kPeephole>
__host__ __device__ inline void cell_point_f32(float zi, float zf, float zg, float zo, float c_prev, float p_i,
                                               float p_f, float p_o, float* h, float* c) {
  if constexpr (kPeephole) {
    zi += p_i * c_prev;
    zf += p_f * c_prev;
  }
  const float i = sigmoid_f32(zi);
  const float f = sigmoid_f32(zf);
  const float g = tanhf(zg);
  const float cn = f * c_prev + i * g;
  if constexpr (kPeephole) zo += p_o * cn;
  const float o = sigmoid_f32(zo);
  *c = cn;
  *h = o * tanhf(cn);
}

}  // namespace fastlstm::cuda::detail
