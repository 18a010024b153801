// The CUDA inference forward (kernels/forward.cuh: input-projection GEMM + persistent recurrence per layer)
// executed on the CPU execution model through the same host orchestration the engine uses, against an LSTM
// in float64 (fastlstm.reference's formulas, every option: layers, bidirectional, strided x / y as
// batch_first, h0 / c0, lengths, projection, peepholes, no bias). Outputs are poisoned with NaN first, so an
// element never written fails. Shapes hit the tails: H and N not multiples of the tiles, K not a multiple of
// the mma's, B = 1, T = 1, blocks with fewer units than the others; devices whose plans put the weights on
// chip and off it. fp32 is held to float32 rounding; tf32 / bf16 / f16 to their operand precision.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "harness.h"
#include "kernels/forward.cuh"
#include "kernels/pack.h"

namespace {

namespace emu = fastlstm::emu;
namespace cd = fastlstm::cuda::detail;
using fastlstm::ModelShape;

struct EmuExec {
  template <class Kernel, class Params>
  void operator()(const cd::LaunchPlan& pl, Kernel kernel, const Params& params) {
    emu::launch({dim3(pl.grid.x, pl.grid.y, pl.grid.z), dim3(pl.block.x, pl.block.y, pl.block.z), pl.dynamic_smem,
                 pl.cooperative},
                kernel, params);
  }
};

struct Case {
  ModelShape s;
  int T, B;
  bool batch_first, states, lengths;
};

// One layer and direction as the user holds it (RawLayer's layouts), float32.
struct Raw {
  std::vector<float> w_ih, w_hh, b_ih, b_hh, w_hr, peep;  // peep: p_i, p_f, p_o
};

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The float64 LSTM: y [T][B][D*R], h_n [L*D][B][R], c_n [L*D][B][H].
void reference(const Case& c, const std::vector<Raw>& raw, const std::vector<float>& x, const std::vector<float>& h0,
               const std::vector<float>& c0, const std::vector<int>& len, std::vector<double>& y,
               std::vector<double>& hn, std::vector<double>& cn) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), T = c.T, B = c.B;
  std::vector<double> in(x.begin(), x.end());  // [T][B][In]
  for (int k = 0; k < s.num_layers; ++k) {
    const int In = s.layer_input(k);
    std::vector<double> out(static_cast<std::size_t>(T) * B * D * R, 0.0);
    for (int d = 0; d < D; ++d) {
      const Raw& w = raw[k * D + d];
      const int ld = k * D + d;
      for (int b = 0; b < B; ++b) {
        std::vector<double> h(R), cc(H), m(H), z(4 * H);
        for (int j = 0; j < R; ++j) h[j] = c.states ? h0[(static_cast<std::size_t>(ld) * B + b) * R + j] : 0.0;
        for (int j = 0; j < H; ++j) cc[j] = c.states ? c0[(static_cast<std::size_t>(ld) * B + b) * H + j] : 0.0;
        for (int st = 0; st < len[b]; ++st) {
          const int t = d == 1 ? len[b] - 1 - st : st;
          const double* xt = in.data() + (static_cast<std::size_t>(t) * B + b) * In;
          for (int n = 0; n < 4 * H; ++n) {
            double v = s.bias ? static_cast<double>(w.b_ih[n]) + w.b_hh[n] : 0.0;
            for (int i = 0; i < In; ++i) v += static_cast<double>(w.w_ih[static_cast<std::size_t>(n) * In + i]) * xt[i];
            for (int i = 0; i < R; ++i) v += static_cast<double>(w.w_hh[static_cast<std::size_t>(n) * R + i]) * h[i];
            z[n] = v;
          }
          for (int j = 0; j < H; ++j) {
            double zi = z[j], zf = z[H + j];
            if (s.peephole) {
              zi += w.peep[j] * cc[j];
              zf += w.peep[H + j] * cc[j];
            }
            cc[j] = sig(zf) * cc[j] + sig(zi) * std::tanh(z[2 * H + j]);
            double zo = z[3 * H + j];
            if (s.peephole) zo += w.peep[2 * H + j] * cc[j];
            m[j] = sig(zo) * std::tanh(cc[j]);
          }
          for (int q = 0; q < R; ++q) {
            if (s.proj_size == 0) {
              h[q] = m[q];
            } else {
              double v = 0.0;
              for (int j = 0; j < H; ++j) v += static_cast<double>(w.w_hr[static_cast<std::size_t>(q) * H + j]) * m[j];
              h[q] = v;
            }
            out[(static_cast<std::size_t>(t) * B + b) * D * R + d * R + q] = h[q];
          }
        }
        for (int q = 0; q < R; ++q) hn[(static_cast<std::size_t>(ld) * B + b) * R + q] = h[q];
        for (int j = 0; j < H; ++j) cn[(static_cast<std::size_t>(ld) * B + b) * H + j] = cc[j];
      }
    }
    in = std::move(out);
  }
  y = in;
}

// Returns the largest |y - y64|.
template <cd::Operand Op>
double check_forward(const Case& c, const cd::DeviceLimits& dev, double tol, std::uint64_t seed) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), L = s.num_layers, T = c.T, B = c.B;
  std::mt19937_64 rng(seed);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H));
  std::uniform_real_distribution<float> uw(-2 * scale, 2 * scale);
  std::normal_distribution<float> normal;
  std::vector<Raw> raw(static_cast<std::size_t>(L) * D);
  for (int k = 0; k < L; ++k) {
    for (int d = 0; d < D; ++d) {
      Raw& w = raw[k * D + d];
      w.w_ih.resize(static_cast<std::size_t>(4) * H * s.layer_input(k));
      w.w_hh.resize(static_cast<std::size_t>(4) * H * R);
      w.b_ih.resize(4 * H);
      w.b_hh.resize(4 * H);
      w.w_hr.resize(static_cast<std::size_t>(s.proj_size) * H);
      w.peep.resize(3 * H);
      for (auto* v : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh, &w.w_hr, &w.peep}) {
        for (float& e : *v) e = uw(rng);
      }
    }
  }
  // x in the user's layout ([T,B,I] or [B,T,I]); the reference reads [T][B][I].
  const int I = s.input_size;
  std::vector<float> x(static_cast<std::size_t>(T) * B * I), xt(x.size());
  for (float& v : x) v = normal(rng);
  const std::int64_t x_st = c.batch_first ? I : static_cast<std::int64_t>(B) * I;
  const std::int64_t x_sb = c.batch_first ? static_cast<std::int64_t>(T) * I : I;
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      for (int i = 0; i < I; ++i) xt[(static_cast<std::size_t>(t) * B + b) * I + i] = x[t * x_st + b * x_sb + i];
    }
  }
  std::vector<float> h0(static_cast<std::size_t>(L) * D * B * R), c0(static_cast<std::size_t>(L) * D * B * H);
  for (float& v : h0) v = 0.5f * normal(rng);
  for (float& v : c0) v = normal(rng);
  std::vector<int> len(B, T);
  if (c.lengths) {
    for (int b = 0; b < B; ++b) len[b] = 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(T));
    len[0] = T;
  }

  // Packed as the engine packs them (kernels/pack.h), the image used in place.
  std::vector<fastlstm::RawLayer> rl(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const Raw& w = raw[i];
    rl[i] = {w.w_ih.data(), w.w_hh.data(), w.b_ih.data(),     w.b_hh.data(),
             w.w_hr.data(), w.peep.data(), w.peep.data() + H, w.peep.data() + 2 * H};
  }
  const cd::PackedImage image = cd::pack_image<Op>(s, rl.data());
  const std::vector<cd::PackedLayer<Op>> layers = cd::layer_views<Op>(image, image.bytes.data());

  const std::int64_t y_st = c.batch_first ? static_cast<std::int64_t>(D) * R : static_cast<std::int64_t>(B) * D * R;
  const std::int64_t y_sb = c.batch_first ? static_cast<std::int64_t>(T) * D * R : static_cast<std::int64_t>(D) * R;
  std::vector<float> y(static_cast<std::size_t>(T) * B * D * R, NAN), hn(h0.size(), NAN), cn(c0.size(), NAN);
  const cd::ForwardLayout layout = cd::forward_layout(s, T, B);
  std::vector<unsigned char> workspace(layout.total, 0xff);  // NaN-filled floats
  cd::ForwardIO io;
  io.T = T;
  io.B = B;
  io.x = x.data();
  io.x_st = x_st;
  io.x_sb = x_sb;
  io.h0 = c.states ? h0.data() : nullptr;
  io.c0 = c.states ? c0.data() : nullptr;
  io.lengths = c.lengths ? len.data() : nullptr;
  io.y = y.data();
  io.y_st = y_st;
  io.y_sb = y_sb;
  io.h_n = hn.data();
  io.c_n = cn.data();
  EmuExec exec;
  cd::forward_sequence<Op>(exec, dev, s, layers.data(), io, workspace.data());

  std::vector<double> y64, hn64(hn.size()), cn64(cn.size());
  reference(c, raw, xt, h0, c0, len, y64, hn64, cn64);
  std::vector<float> yt(y.size());  // the kernel's y in [T][B][D*R]
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      for (int q = 0; q < D * R; ++q)
        yt[(static_cast<std::size_t>(t) * B + b) * D * R + q] = y[t * y_st + b * y_sb + q];
    }
  }
  const std::string what = "T=" + std::to_string(T) + " B=" + std::to_string(B) + " I=" + std::to_string(I) +
                           " H=" + std::to_string(H) + " P=" + std::to_string(s.proj_size) + " L=" + std::to_string(L) +
                           " D=" + std::to_string(D) + " op=" + std::to_string(static_cast<int>(Op)) +
                           " sms=" + std::to_string(dev.sm_count);
  const auto expect = [&](const char* name, const std::vector<float>& got, const std::vector<double>& want) {
    std::size_t worst = 0;
    if (emu::testing::tolerance_ratio(got.data(), want.data(), got.size(), tol, tol, &worst) > 1.0) {
      emu::testing::fail(__FILE__, __LINE__,
                         std::string(name) + " differs at " + std::to_string(worst) + ": " +
                             std::to_string(got[worst]) + " vs " + std::to_string(want[worst]) + " (" + what + ")");
    }
  };
  expect("y", yt, y64);
  expect("h_n", hn, hn64);
  expect("c_n", cn, cn64);
  double err = 0.0;
  for (std::size_t i = 0; i < yt.size(); ++i) err = std::max(err, std::fabs(yt[i] - y64[i]));
  return err;
}

ModelShape shape(int I, int H, int L = 1, bool bi = false, int P = 0, bool peep = false, bool bias = true) {
  return {.input_size = I,
          .hidden_size = H,
          .num_layers = L,
          .proj_size = P,
          .bidirectional = bi,
          .bias = bias,
          .peephole = peep};
}

// Small devices, so that blocks own several units and the last owns fewer: 4 SMs with room for the weights,
// and 3 SMs whose shared memory holds the gate sums only (weights read from global memory every step).
constexpr cd::DeviceLimits kSmall{4, 2048, 48 * 1024, 65536};
constexpr cd::DeviceLimits kNoRoom{3, 2048, 2048, 65536};

// fp32: products and sums in float32 over at most ~70 terms and 6 steps: a few 1e-6.
constexpr double kTolF32 = 2e-5;

std::vector<Case> cases() {
  if (emu::detail::kTsan) return {{shape(5, 9, 1, true, 0, true), 3, 2, false, true, true}};
  return {
      {shape(7, 13), 5, 3, false, false, false},                             // plain
      {shape(5, 9, 2, true), 6, 3, false, true, true},                       // stacked, bidirectional, states, lengths
      {shape(6, 11, 2, true, 5, true), 5, 4, true, true, true},              // + projection, peepholes, batch_first
      {shape(3, 10, 1, false, 0, false, false), 1, 1, false, false, false},  // T = 1, B = 1, no bias
      {shape(70, 33, 1, false, 7), 4, 2, true, false, true},                 // K > one slice, P < H
      {shape(9, 20, 1, true), 3, 11, false, true, true},  // B = 11: two batch tiles of the mma, the second partial
  };
}

EMU_TEST(forward_f32_matches_float64) {
  std::uint64_t seed = 1;
  for (const Case& c : cases()) {
    for (const cd::DeviceLimits& dev : {kSmall, kNoRoom}) check_forward<cd::Operand::kF32>(c, dev, kTolF32, seed++);
    if (!emu::detail::kTsan) check_forward<cd::Operand::kF32>(c, cd::kH200, kTolF32, seed++);
  }
}

// Operand rounding: tf32 keeps 10 mantissa bits (2^-11 relative), bf16 7 (2^-8), f16 10.
EMU_TEST(forward_low_precision_matches_float64) {
  if (emu::detail::kTsan) return;
  std::uint64_t seed = 100;
  for (const Case& c : {cases()[1], cases()[2], cases()[4], cases()[5]}) {
    // Each also differs from fp32 by more than fp32's tolerance: the operands really are rounded.
    CHECK(check_forward<cd::Operand::kTF32>(c, kSmall, 3e-3, seed++) > 2e-5);
    CHECK(check_forward<cd::Operand::kBF16>(c, kSmall, 3e-2, seed++) > 2e-4);
    CHECK(check_forward<cd::Operand::kF16>(c, kNoRoom, 3e-3, seed++) > 2e-5);
  }
}

EMU_TEST(forward_every_schedule) {
  if (emu::detail::kTsan) return;
  for (emu::Order o : {emu::Order::reverse, emu::Order::random}) {
    emu::set_schedule({o, 7});
    check_forward<cd::Operand::kF32>(cases()[2], kSmall, kTolF32, 3);
  }
}

EMU_TEST(recurrence_plan_for_reference_devices) {
  // H200, T=1024 B=16 H=768 fp32: 6 units per block on 128 blocks, W_hh slice 72 KiB on chip.
  cd::RecurrencePlan p = cd::recurrence_plan(768, 0, 1, 16, 4, cd::kH200);
  CHECK_EQ(p.units, 6);
  CHECK_EQ(p.launch.grid.x, 128u);
  CHECK(p.weights_in_smem);
  CHECK(p.launch.cooperative);
  CHECK(p.launch.grid.x * p.launch.grid.y <= static_cast<unsigned>(cd::kH200.sm_count));
  // Bidirectional H=1024 on an A100: 54 blocks per direction, 19 units, fp32 slice 304 KiB > 163 KiB: off chip;
  // bf16 halves it (152 KiB): on chip, with room for 2 batch rows per pass; H=512 bf16 fits.
  p = cd::recurrence_plan(1024, 0, 2, 64, 4, cd::kA100);
  CHECK_EQ(p.units, 19);
  CHECK(!p.weights_in_smem);
  CHECK(p.launch.dynamic_smem <= cd::kA100.max_smem_per_block);
  p = cd::recurrence_plan(1024, 0, 2, 64, 2, cd::kA100);
  CHECK(p.weights_in_smem);
  CHECK_EQ(p.batch_chunk, 2);
  CHECK(cd::recurrence_plan(512, 0, 2, 64, 2, cd::kA100).weights_in_smem);
  // Every plan: co-resident (one block per SM), units cover H exactly once, shared memory within the limit.
  for (const cd::DeviceLimits& dev : {cd::kA100, cd::kH200}) {
    for (int H : {1, 7, 128, 768, 1000, 1024, 4096, 16384}) {
      for (int D : {1, 2}) {
        for (int P : {0, 1, H / 2}) {
          const cd::RecurrencePlan q = cd::recurrence_plan(H, P, D, 256, 2, dev);
          CHECK(q.launch.grid.x * q.launch.grid.y <= static_cast<unsigned>(dev.sm_count));
          CHECK(static_cast<int>(q.launch.grid.x) * q.units >= H);
          CHECK(static_cast<int>(q.launch.grid.x - 1) * q.units < H);
          CHECK(P == 0 || static_cast<int>(q.launch.grid.x) * q.punits >= P);
          CHECK(q.launch.dynamic_smem <= dev.max_smem_per_block);
        }
      }
    }
  }
}

}  // namespace
