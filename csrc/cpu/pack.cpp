// Packing weights for a kernel family: the gate-interleaved panels the recurrence reads (in the family's weight
// format: fp32 / fp64, bf16 pairs, int8 quads with per-row scales), the bias, cell parameters and projection in the
// compute type, and for training the transposed panels backward reads.
#include <algorithm>
#include <cmath>
#include <cstdint>
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

// float -> bf16, rounded to nearest even (vcvtneps2bf16's rounding; NaN stays a quiet NaN).
std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

// [G*H, K] row-major -> [NB][ceil(K/2)][G][U][2] bf16: the pair (k, k+1) of a unit in one 32-bit word, k in the
// low half (vdpbf16ps's pairs); units past H and k past K zero (the buffer is zeroed).
void pack_gates_bf16(const float* w, int G, int H, int K, int U, std::uint16_t* out) {
  const std::size_t pairs = static_cast<std::size_t>((K + 1) / 2);
  for (int g = 0; g < G; ++g)
    for (int unit = 0; unit < H; ++unit) {
      const float* row = w + static_cast<std::size_t>(g * H + unit) * K;
      std::uint16_t* dst = out + static_cast<std::size_t>(unit / U) * pairs * G * U * 2 +
                           (static_cast<std::size_t>(g) * U + unit % U) * 2;
      for (int k = 0; k < K; ++k) dst[(static_cast<std::size_t>(k / 2) * G * U) * 2 + (k & 1)] = to_bf16(row[k]);
    }
}

// [G*H, K] row-major -> [ceil(K/U)][G*Hp/2][U][2] bf16 for backward's products with dz in pairs: the rows in
// the packed gate order [NB][G][U] of dz, two consecutive ones per 32-bit word; padding zero (zeroed buffer).
void pack_gates_t_bf16(const float* w, int G, int H, int K, int U, std::uint16_t* out) {
  const std::size_t rows = static_cast<std::size_t>((H + U - 1) / U) * G * U;
  for (int g = 0; g < G; ++g)
    for (int unit = 0; unit < H; ++unit) {
      const float* row = w + static_cast<std::size_t>(g * H + unit) * K;
      const std::size_t kappa = (static_cast<std::size_t>(unit / U) * G + g) * U + unit % U;
      for (int c = 0; c < K; ++c)
        out[(static_cast<std::size_t>(c / U) * rows + (kappa & ~std::size_t(1))) * U + (c % U) * 2 + (kappa & 1)] =
            to_bf16(row[c]);
    }
}

// How the gate panels (w_ih, w_hh) of a weight format are laid out, and the transposed ones training adds; the
// other pieces stay in the compute type.
template <class T>
struct NativePanels {
  static std::size_t bytes(std::size_t hp, int G, int K) { return mul_sz(mul_sz(hp, G), mul_sz(K, sizeof(T))); }
  static void pack(const T* w, int G, int H, int K, int U, void* out) {
    pack_gates(w, G, H, K, U, static_cast<T*>(out));
  }
  static std::size_t bytes_t(std::size_t hp, int G, int K, int U) {
    return mul_sz(mul_sz(hp, G), mul_sz(round_up(K, U), sizeof(T)));
  }
  static void pack_t(const T* w, int G, int H, int K, int U, void* out) {
    pack_gates_t(w, G, H, K, U, static_cast<T*>(out));
  }
};
struct Bf16Panels {
  static std::size_t bytes(std::size_t hp, int G, int K) { return mul_sz(mul_sz(hp, G), mul_sz(round_up(K, 2), 2)); }
  static void pack(const float* w, int G, int H, int K, int U, void* out) {
    pack_gates_bf16(w, G, H, K, U, static_cast<std::uint16_t*>(out));
  }
  static std::size_t bytes_t(std::size_t hp, int G, int K, int U) {
    return mul_sz(mul_sz(hp, G), mul_sz(round_up(K, U), 2));
  }
  static void pack_t(const float* w, int G, int H, int K, int U, void* out) {
    pack_gates_t_bf16(w, G, H, K, U, static_cast<std::uint16_t*>(out));
  }
};

// [G*H, K] row-major -> per unit block [ceil(K/4)][G][U][4] int8 (four k of a unit in one 32-bit word, k in the
// lowest byte: vpdpbusd's quads), then the scales [G][U] float (max |w| / 127 of each row: symmetric, per output
// row) and the corrections [G][U] int32 (128 * the row's sum of quantized weights: the activations are stored
// as q + 128). Units past H and k past K zero (the buffer is zeroed).
void pack_gates_int8(const float* w, int G, int H, int K, int U, char* out) {
  const std::size_t quads = static_cast<std::size_t>((K + 3) / 4);
  const std::size_t block = quads * G * U * 4 + static_cast<std::size_t>(G) * U * 8;
  for (int g = 0; g < G; ++g)
    for (int unit = 0; unit < H; ++unit) {
      const float* row = w + static_cast<std::size_t>(g * H + unit) * K;
      char* base = out + static_cast<std::size_t>(unit / U) * block;
      const std::size_t lane = static_cast<std::size_t>(g) * U + unit % U;
      float amax = 0.0f;
      for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
      const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
      std::int32_t sum = 0;
      for (int k = 0; k < K; ++k) {
        const long q = std::clamp(std::lrint(row[k] / scale), -127L, 127L);  // round to nearest even
        reinterpret_cast<std::int8_t*>(base)[((static_cast<std::size_t>(k / 4) * G * U) + lane) * 4 + (k & 3)] =
            static_cast<std::int8_t>(q);
        sum += static_cast<std::int32_t>(q);
      }
      char* tail = base + quads * G * U * 4;
      std::memcpy(tail + lane * 4, &scale, 4);
      const std::int32_t comp = 128 * sum;
      std::memcpy(tail + static_cast<std::size_t>(G) * U * 4 + lane * 4, &comp, 4);
    }
}

struct Int8Panels {
  static std::size_t bytes(std::size_t hp, int G, int K) {
    return add_sz(mul_sz(mul_sz(hp, G), round_up(K, 4)), mul_sz(mul_sz(hp, G), 8));
  }
  static void pack(const float* w, int G, int H, int K, int U, void* out) {
    pack_gates_int8(w, G, H, K, U, static_cast<char*>(out));
  }
  static std::size_t bytes_t(std::size_t, int, int, int) { return 0; }  // inference only
  static void pack_t(const float*, int, int, int, int, void*) {}
};

template <class T, class Panels = NativePanels<T>>
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
      o.w_ih = layout.reserve(Panels::bytes(hp, G, s.layer_input(k)));
      o.w_hh = layout.reserve(Panels::bytes(hp, G, s.out_size()));
      o.bias = piece(G * hp);
      o.peep = piece(3 * hp);
      o.w_hr = piece(mul_sz(pp, H));
      if (m.training) {
        o.w_ih_t = layout.reserve(Panels::bytes_t(hp, G, s.layer_input(k), U));
        o.w_hh_t = layout.reserve(Panels::bytes_t(hp, G, s.out_size(), U));
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
      Panels::pack(static_cast<const T*>(raw.w_ih), G, H, s.layer_input(k), U, at(o.w_ih));
      Panels::pack(static_cast<const T*>(raw.w_hh), G, H, s.out_size(), U, at(o.w_hh));
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
        Panels::pack_t(static_cast<const T*>(raw.w_ih), G, H, s.layer_input(k), U, at(o.w_ih_t));
        Panels::pack_t(static_cast<const T*>(raw.w_hh), G, H, s.out_size(), U, at(o.w_hh_t));
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
    case WeightFormat::kBF16:
      pack_all<float, Bf16Panels>(*m, layers);
      break;
    case WeightFormat::kI8RowScaled:
      pack_all<float, Int8Panels>(*m, layers);
      break;
    default:
      throw std::invalid_argument(std::string("weights: no packer for ") + weight_format_name(family.weights));
  }
  return m;
}

}  // namespace fastlstm::cpu
