// Packing on the host: the user's per-layer, per-direction parameters (RawLayer, fp32) -> one byte image of
// every layer as the kernels read it (forward.cuh's PackedLayer), operands converted to the precision's
// format once. The engine uploads the image in one copy; the execution-model tests run on it in place.
//   per layer k: w_ih [D*4H, In] (both directions stacked) | w_hh [D][4H, R] | w_hr [D][P, H] |
//                bias [D*4H] = b_ih + b_hh (fp32) | peep [D][3][H] (fp32)
// Sections are 256-byte aligned (any base cudaMalloc returns keeps every section aligned).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fastlstm/types.h"
#include "kernels/forward.cuh"

namespace fastlstm::cuda::detail {

struct PackedImage {
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  struct Layer {
    std::size_t w_ih = kNone, w_hh = kNone, w_hr = kNone, bias = kNone, peep = kNone;
  };
  std::vector<unsigned char> bytes;
  std::vector<Layer> layers;
};

template <Operand Op>
PackedImage pack_image(const ModelShape& s, const RawLayer* raw) {
  using Tr = OperandTraits<Op>;
  using Storage = typename Tr::Storage;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), P = s.proj_size;
  PackedImage img;
  const auto section = [&img](std::size_t bytes) {
    const std::size_t at = (img.bytes.size() + 255) & ~std::size_t{255};
    img.bytes.resize(at + bytes);
    return at;
  };
  const auto put = [&img](std::size_t at, std::size_t i, Storage v) {
    std::memcpy(img.bytes.data() + at + i * sizeof(Storage), &v, sizeof(Storage));
  };
  const auto putf = [&img](std::size_t at, std::size_t i, float v) {
    std::memcpy(img.bytes.data() + at + i * sizeof(float), &v, sizeof(float));
  };
  for (int k = 0; k < s.num_layers; ++k) {
    const std::size_t In = static_cast<std::size_t>(s.layer_input(k)), G = 4 * static_cast<std::size_t>(H);
    PackedImage::Layer L;
    L.w_ih = section(sizeof(Storage) * D * G * In);
    L.w_hh = section(sizeof(Storage) * D * G * R);
    if (P > 0) L.w_hr = section(sizeof(Storage) * D * static_cast<std::size_t>(P) * H);
    if (s.bias) L.bias = section(sizeof(float) * D * G);
    if (s.peephole) L.peep = section(sizeof(float) * D * 3 * static_cast<std::size_t>(H));
    for (int d = 0; d < D; ++d) {
      const RawLayer& r = raw[k * D + d];
      const auto* wih = static_cast<const float*>(r.w_ih);
      const auto* whh = static_cast<const float*>(r.w_hh);
      for (std::size_t i = 0; i < G * In; ++i) put(L.w_ih, d * G * In + i, Tr::store(wih[i]));
      for (std::size_t i = 0; i < G * R; ++i) put(L.w_hh, d * G * R + i, Tr::store(whh[i]));
      if (P > 0) {
        const auto* whr = static_cast<const float*>(r.w_hr);
        const std::size_t n = static_cast<std::size_t>(P) * H;
        for (std::size_t i = 0; i < n; ++i) put(L.w_hr, d * n + i, Tr::store(whr[i]));
      }
      if (s.bias) {
        const auto *bi = static_cast<const float*>(r.b_ih), *bh = static_cast<const float*>(r.b_hh);
        for (std::size_t n = 0; n < G; ++n) putf(L.bias, d * G + n, bi[n] + bh[n]);
      }
      if (s.peephole) {
        const float* pp[3] = {static_cast<const float*>(r.p_i), static_cast<const float*>(r.p_f),
                              static_cast<const float*>(r.p_o)};
        for (std::size_t g = 0; g < 3; ++g) {
          for (std::size_t j = 0; j < static_cast<std::size_t>(H); ++j) putf(L.peep, (d * 3 + g) * H + j, pp[g][j]);
        }
      }
    }
    img.layers.push_back(L);
  }
  return img;
}

// The kernels' view of an image whose bytes start at `base` (host memory for the tests, device memory for the
// engine).
template <Operand Op>
std::vector<PackedLayer<Op>> layer_views(const PackedImage& img, const unsigned char* base) {
  using Storage = typename OperandTraits<Op>::Storage;
  const auto at = [base](std::size_t off) { return off == PackedImage::kNone ? nullptr : base + off; };
  std::vector<PackedLayer<Op>> out;
  for (const PackedImage::Layer& L : img.layers) {
    PackedLayer<Op> v;
    v.w_ih = reinterpret_cast<const Storage*>(at(L.w_ih));
    v.w_hh = reinterpret_cast<const Storage*>(at(L.w_hh));
    v.w_hr = reinterpret_cast<const Storage*>(at(L.w_hr));
    v.bias = reinterpret_cast<const float*>(at(L.bias));
    v.peep = reinterpret_cast<const float*>(at(L.peep));
    out.push_back(v);
  }
  return out;
}

}  // namespace fastlstm::cuda::detail
