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
// With `gates` (training), the post-activation gates i, f, g, o are written there: all backward needs of the
// step besides c and c_prev.
template <bool kPeephole>
__host__ __device__ inline void cell_point_f32(float zi, float zf, float zg, float zo, float c_prev, float p_i,
                                               float p_f, float p_o, float* h, float* c, float* gates = nullptr) {
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
  if (gates != nullptr) {
    gates[0] = i;
    gates[1] = f;
    gates[2] = g;
    gates[3] = o;
  }
}

// The backward of one (b, j) element: from the step's gates (i, f, g, o), c_prev and c, the gradient dh
// reaching h_t (or m_t = o * tanh(c_t) with a projection) and dc, the gradient reaching c_t from step t + 1;
// -> dz = the gradients of the four pre-activations, and dc becomes the gradient reaching c_prev.
//   dc_t = dc + dh * o * (1 - tanh(c)^2) [+ p_o * dz_o];  dz_o = dh * tanh(c) * o (1 - o)
//   dz_i = dc_t * g * i (1 - i);  dz_f = dc_t * c_prev * f (1 - f);  dz_g = dc_t * i * (1 - g^2)
//   dc_prev = dc_t * f [+ p_i * dz_i + p_f * dz_f]
// The peephole weights' gradients are dz_i * c_prev, dz_f * c_prev and dz_o * c, summed over rows and steps.
template <bool kPeephole>
__host__ __device__ inline void cell_point_backward_f32(const float* gates, float c_prev, float c, float dh, float p_i,
                                                        float p_f, float p_o, float* dc, float* dz) {
  const float i = gates[0], f = gates[1], g = gates[2], o = gates[3];
  const float tc = tanhf(c);
  const float dzo = dh * tc * o * (1.0f - o);
  float dct = *dc + dh * o * (1.0f - tc * tc);
  if constexpr (kPeephole) dct += p_o * dzo;
  const float dzi = dct * g * i * (1.0f - i);
  const float dzf = dct * c_prev * f * (1.0f - f);
  const float dzg = dct * i * (1.0f - g * g);
  float dcp = dct * f;
  if constexpr (kPeephole) dcp += p_i * dzi + p_f * dzf;
  dz[0] = dzi;
  dz[1] = dzf;
  dz[2] = dzg;
  dz[3] = dzo;
  *dc = dcp;
}

}  // namespace fastlstm::cuda::detail
