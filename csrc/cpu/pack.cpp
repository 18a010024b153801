// Packing weights for a kernel family of the fp32 / fp64 formats (weights in the compute type): the
// gate-interleaved panels the recurrence reads, and for training the transposed panels backward reads.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/packed.h"

namespace fastlstm::cpu {
namespace {

// [G*H, K] row-major -> [NB][K][G][U], units past H zero (the buffer is zeroed). Through tiles of U units by
// 16 columns, read and written a cache line at a time: element by element, the GU-strided writes of one
// source row left 3/4 of L1's sets unused and ran at ~1 GB/s.
template <class T>
void pack_gates(const T* w, int G, int H, int K, int U, T* out) {
  constexpr int kCols = 16;
  T tile[64][kCols];  // [unit][column]; U <= 64
  for (int b = 0; b * U < H; ++b) {
    const int count = std::min(U, H - b * U);
    for (int g = 0; g < G; ++g) {
      for (int k0 = 0; k0 < K; k0 += kCols) {
        const int kc = std::min(kCols, K - k0);
        for (int u = 0; u < count; ++u) {
          const T* src = w + static_cast<std::size_t>(g * H + b * U + u) * K + k0;
          // A constant-size copy is a few vector moves; a variable-size one becomes `rep movs`, ~100 cycles
          // to start (it was 60% of the packing time).
          if (kc == kCols)
            std::memcpy(tile[u], src, sizeof(tile[u]));
          else
            std::memcpy(tile[u], src, sizeof(T) * kc);
        }
        for (int kk = 0; kk < kc; ++kk) {
          T* dst = out + ((static_cast<std::size_t>(b) * K + k0 + kk) * G + g) * U;
          for (int u = 0; u < count; ++u) dst[u] = tile[u][kk];
        }
      }
    }
  }
}

// [P, H] row-major -> [ceil(P/U)][H][U].
template <class T>
void pack_rows(const T* w, int P, int H, int U, T* out) {
  const int pb = (P + U - 1) / U;
  for (int b = 0; b < pb; ++b)
    for (int k = 0; k < H; ++k)
      for (int u = 0; u < U; ++u) {
        const int row = b * U + u;
        out[(static_cast<std::size_t>(b) * H + k) * U + u] = row < P ? w[static_cast<std::size_t>(row) * H + k] : T(0);
      }
}

// [G*H, K] row-major -> [ceil(K/U)][G * Hp][U] for backward's products with dz: the rows in the packed gate
// order [NB][G][U] of dz, the columns (K) in vectors; padding stays zero (the buffer is zeroed). Each source
// row is read once, in order, and written as U-element runs.
template <class T>
void pack_gates_t(const T* w, int G, int H, int K, int U, T* out) {
  const std::size_t rows = static_cast<std::size_t>((H + U - 1) / U) * G * U;
  for (int g = 0; g < G; ++g)
    for (int unit = 0; unit < H; ++unit) {
      const T* row = w + static_cast<std::size_t>(g * H + unit) * K;
      const std::size_t kappa = (static_cast<std::size_t>(unit / U) * G + g) * U + unit % U;
      for (int c0 = 0; c0 < K; c0 += U)
        std::memcpy(out + (static_cast<std::size_t>(c0 / U) * rows + kappa) * U, row + c0,
                    sizeof(T) * static_cast<std::size_t>(std::min(U, K - c0)));
    }
}

// [P, H] row-major -> [ceil(H/U)][P][U] (columns of H in vectors).
template <class T>
void pack_cols(const T* w, int P, int H, int U, T* out) {
  const int nb = (H + U - 1) / U;
  for (int b = 0; b < nb; ++b)
    for (int p = 0; p < P; ++p)
      for (int u = 0; u < U; ++u) {
        const int col = b * U + u;
        out[(static_cast<std::size_t>(b) * P + p) * U + u] = col < H ? w[static_cast<std::size_t>(p) * H + col] : T(0);
      }
}

template <class T>
void pack_all(PackedModel& m, const RawLayer* layers) {
  const ModelShape& s = m.shape;
  const int U = m.units, G = m.gates, H = s.hidden_size, P = s.proj_size, D = s.directions();
  const std::size_t hp = round_up(H, U), pp = round_up(P, U);
  Layout layout;
  auto piece = [&](std::size_t elems) { return layout.reserve(mul_sz(elems, sizeof(T))); };
  m.layers.resize(static_cast<std::size_t>(s.num_layers) * D);
  for (int k = 0; k < s.num_layers; ++k) {
    for (int d = 0; d < D; ++d) {
      PackedModel::Offsets& o = m.layers[k * D + d];
      o.w_ih = piece(mul_sz(mul_sz(hp, G), s.layer_input(k)));
      o.w_hh = piece(mul_sz(mul_sz(hp, G), s.out_size()));
      o.bias = piece(G * hp);
      o.peep = piece(3 * hp);
      o.w_hr = piece(mul_sz(pp, H));
      if (m.training) {
        o.w_ih_t = piece(mul_sz(mul_sz(hp, G), round_up(s.layer_input(k), U)));
        o.w_hh_t = piece(mul_sz(mul_sz(hp, G), round_up(s.out_size(), U)));
        o.w_hr_t = piece(mul_sz(hp, P));
      }
    }
  }
  m.nbytes = layout.total();
  m.data = AlignedBuffer(m.nbytes);
  auto at = [&](std::size_t offset) { return reinterpret_cast<T*>(static_cast<char*>(m.data.data()) + offset); };
  for (int k = 0; k < s.num_layers; ++k) {
    for (int d = 0; d < D; ++d) {
      const RawLayer& raw = layers[k * D + d];
      const PackedModel::Offsets& o = m.layers[k * D + d];
      pack_gates(static_cast<const T*>(raw.w_ih), G, H, s.layer_input(k), U, at(o.w_ih));
      pack_gates(static_cast<const T*>(raw.w_hh), G, H, s.out_size(), U, at(o.w_hh));
      T* bias = at(o.bias);  // [NB][G][U]
      if (s.bias) {
        const T* bi = static_cast<const T*>(raw.b_ih);
        const T* bh = static_cast<const T*>(raw.b_hh);
        for (int g = 0; g < G; ++g)
          for (int j = 0; j < H; ++j) bias[((j / U) * G + g) * U + j % U] = bi[g * H + j] + bh[g * H + j];
      }
      if (s.peephole) {
        const T* src[3] = {static_cast<const T*>(raw.p_i), static_cast<const T*>(raw.p_f),
                           static_cast<const T*>(raw.p_o)};
        for (int g = 0; g < 3; ++g) std::memcpy(at(o.peep) + g * hp, src[g], sizeof(T) * H);
      }
      if (P > 0) pack_rows(static_cast<const T*>(raw.w_hr), P, H, U, at(o.w_hr));
      if (m.training) {
        pack_gates_t(static_cast<const T*>(raw.w_ih), G, H, s.layer_input(k), U, at(o.w_ih_t));
        pack_gates_t(static_cast<const T*>(raw.w_hh), G, H, s.out_size(), U, at(o.w_hh_t));
        if (P > 0) pack_cols(static_cast<const T*>(raw.w_hr), P, H, U, at(o.w_hr_t));
      }
    }
  }
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

}  // namespace

std::unique_ptr<PackedModel> pack_model(const KernelFamily& family, Cell cell, const ModelShape& shape,
                                        const RawLayer* layers, bool training) {
  require(shape.input_size >= 1, "input_size: must be >= 1");
  require(shape.hidden_size >= 1, "hidden_size: must be >= 1");
  require(shape.num_layers >= 1, "num_layers: must be >= 1");
  require(shape.proj_size >= 0 && shape.proj_size < shape.hidden_size, "proj_size: must be in [0, hidden_size)");
  require(layers != nullptr, "layers: null");
  auto m = std::make_unique<PackedModel>();
  m->shape = shape;
  m->training = training;
  m->owner = &family;
  m->family = &family;
  m->cell = cell;
  m->units = family.units;
  m->gates = family.cells[static_cast<int>(cell)].gates;
  switch (family.weights) {
    case WeightFormat::kF32:
      pack_all<float>(*m, layers);
      break;
    case WeightFormat::kF64:
      pack_all<double>(*m, layers);
      break;
    default:
      throw std::invalid_argument(std::string("weights: no packer for ") + weight_format_name(family.weights));
  }
  return m;
}

}  // namespace fastlstm::cpu
