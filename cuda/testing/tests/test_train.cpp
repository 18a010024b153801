// The CUDA training step (kernels/train.cuh: the forward keeping each layer's gates and c, the persistent
// backward recurrence, the fixed-order weight and input gradients) executed on the CPU execution model against
// backpropagation through time in float64 (lstm_model.h), for every option this increment covers: layers,
// bidirectional, batch_first strides, h0 / c0 and their gradients, gradients reaching h_n / c_n, lengths,
// peepholes, no bias, dropout masks between layers, projections. Outputs are poisoned with NaN first; shapes hit the
// tails (H not a multiple of the tiles, B = 1, T = 1, B = 11 for two mma batch tiles, blocks owning fewer units);
// devices with the W_hh^T slice on chip and off it. Gradients must be bitwise identical from run to run, under another
// schedule.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.h"
#include "kernels/pack.h"
#include "kernels/train.cuh"
#include "lstm_model.h"
#include "orchestration.h"

namespace {

namespace emu = fastlstm::emu;
namespace cd = fastlstm::cuda::detail;
using Case = emu::testing::LstmCase;
using emu::testing::EmuExec;
using emu::testing::kNoRoom;
using emu::testing::kSmall;
using emu::testing::Problem;
using emu::testing::shape;
using fastlstm::ModelShape;

// Everything a training call writes, NaN-poisoned before it.
struct Outputs {
  std::vector<float> y, hn, cn, dx, dh0, dc0;
  std::vector<std::vector<float>> w_ih, w_hh, bias, bias2, peep, w_hr;  // per layer, directions stacked
  bool operator==(const Outputs& o) const {
    const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    const auto all = [&](const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
      for (std::size_t k = 0; k < a.size(); ++k)
        if (!same(a[k], b[k])) return false;
      return true;
    };
    return same(y, o.y) && same(dx, o.dx) && same(dh0, o.dh0) && same(dc0, o.dc0) && all(w_ih, o.w_ih) &&
           all(w_hh, o.w_hh) && all(bias, o.bias) && all(bias2, o.bias2) && all(peep, o.peep) && all(w_hr, o.w_hr);
  }
};

template <cd::Operand Op>
Outputs run_train(const Case& c, const cd::DeviceLimits& dev, const Problem& pr, const std::vector<float>& dy,
                  const std::vector<float>& dh_n, const std::vector<float>& dc_n) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), P = s.proj_size, L = s.num_layers, T = c.T,
            B = c.B;
  const cd::PackedImage image = cd::pack_image<Op>(s, pr.layers.data());
  const std::vector<cd::PackedLayer<Op>> layers = cd::layer_views<Op>(image, image.bytes.data());
  Outputs o;
  o.y.assign(static_cast<std::size_t>(T) * B * D * R, NAN);
  o.hn.assign(pr.h0.size(), NAN);
  o.cn.assign(pr.c0.size(), NAN);
  o.dx.assign(pr.x.size(), NAN);
  o.dh0.assign(pr.h0.size(), NAN);
  o.dc0.assign(pr.c0.size(), NAN);
  for (int k = 0; k < L; ++k) {
    o.w_ih.emplace_back(static_cast<std::size_t>(D) * 4 * H * s.layer_input(k), NAN);
    o.w_hh.emplace_back(static_cast<std::size_t>(D) * 4 * H * R, NAN);
    o.bias.emplace_back(s.bias ? static_cast<std::size_t>(D) * 4 * H : 0, NAN);
    o.bias2.emplace_back(o.bias.back().size(), NAN);
    o.peep.emplace_back(s.peephole ? static_cast<std::size_t>(D) * 3 * H : 0, NAN);
    o.w_hr.emplace_back(static_cast<std::size_t>(D) * P * H, NAN);
  }
  // The engine's per-direction arrays (GradPointers), each a slice of the stacked vectors above.
  std::vector<fastlstm::GradPointers> grads(static_cast<std::size_t>(L) * D);
  for (int k = 0; k < L; ++k) {
    const std::size_t G = 4 * static_cast<std::size_t>(H), In = static_cast<std::size_t>(s.layer_input(k));
    for (int d = 0; d < D; ++d) {
      fastlstm::GradPointers& g = grads[k * D + d];
      g.w_ih = o.w_ih[k].data() + d * G * In;
      g.w_hh = o.w_hh[k].data() + d * G * R;
      if (s.bias) {
        g.b_ih = o.bias[k].data() + d * G;
        g.b_hh = o.bias2[k].data() + d * G;
      }
      if (P > 0) g.w_hr = o.w_hr[k].data() + static_cast<std::size_t>(d) * P * H;
      if (s.peephole) {
        float* pe = o.peep[k].data() + static_cast<std::size_t>(d) * 3 * H;
        g.p_i = pe;
        g.p_f = pe + H;
        g.p_o = pe + 2 * H;
      }
    }
  }
  // y and dy in the user's layout, as x ([T,B,.] or [B,T,.]).
  const emu::testing::RowStrides ys = emu::testing::user_layout(c, D * R);
  cd::TrainIO io;
  io.fwd.T = T;
  io.fwd.B = B;
  io.fwd.x = pr.x.data();
  io.fwd.x_st = pr.x_st;
  io.fwd.x_sb = pr.x_sb;
  io.fwd.h0 = c.states ? pr.h0.data() : nullptr;
  io.fwd.c0 = c.states ? pr.c0.data() : nullptr;
  io.fwd.lengths = c.lengths ? pr.len.data() : nullptr;
  io.fwd.y = o.y.data();
  io.fwd.y_st = ys.st;
  io.fwd.y_sb = ys.sb;
  io.fwd.h_n = o.hn.data();
  io.fwd.c_n = o.cn.data();
  io.dy = dy.data();
  io.dy_st = ys.st;
  io.dy_sb = ys.sb;
  io.dh_n = c.states ? dh_n.data() : nullptr;
  io.dc_n = c.states ? dc_n.data() : nullptr;
  io.dx = o.dx.data();
  io.dx_st = pr.x_st;
  io.dx_sb = pr.x_sb;
  io.dh0 = o.dh0.data();
  io.dc0 = o.dc0.data();
  std::vector<const float*> masks;
  for (const std::vector<float>& m : pr.masks) masks.push_back(m.data());
  io.masks = masks.empty() ? nullptr : masks.data();
  const cd::TrainLayout layout = cd::train_layout(s, T, B, sizeof(typename cd::OperandTraits<Op>::Storage));
  std::vector<unsigned char> saved(layout.saved_total, 0xff), workspace(layout.work_total, 0xff);  // NaN floats
  EmuExec exec;
  cd::train_sequence<Op>(exec, dev, s, layers.data(), io, grads.data(), saved.data(), workspace.data());
  return o;
}

// Checks every gradient against float64 within `tol` (relative and absolute, per element); -> the largest
// error of dW_hh (the gradient through the whole recurrence).
template <cd::Operand Op>
double check_train(const Case& c, const cd::DeviceLimits& dev, double tol, std::uint64_t seed) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), T = c.T, B = c.B;
  const Problem pr = emu::testing::draw(c, seed);
  std::mt19937_64 rng(seed + 1000);
  std::normal_distribution<float> normal;
  std::vector<float> dy(static_cast<std::size_t>(T) * B * D * R), dh_n(pr.h0.size()), dc_n(pr.c0.size());
  for (auto* v : {&dy, &dh_n, &dc_n}) {
    for (float& e : *v) e = normal(rng);
  }
  const Outputs o = run_train<Op>(c, dev, pr, dy, dh_n, dc_n);

  // The reference takes dy as [T][B][D*R] and zeros for dh_n / dc_n where the call passed none.
  const emu::testing::RowStrides ys = emu::testing::user_layout(c, D * R);
  const std::vector<double> dyt = emu::testing::gather_rows<double>(dy.data(), T, B, D * R, ys);
  const std::vector<float> yt = emu::testing::gather_rows(o.y.data(), T, B, D * R, ys);
  std::vector<double> dh64(dh_n.size(), 0.0), dc64(dc_n.size(), 0.0);
  if (c.states) {
    dh64.assign(dh_n.begin(), dh_n.end());
    dc64.assign(dc_n.begin(), dc_n.end());
  }
  std::vector<double> y64, hn64, cn64;
  emu::testing::Trace trace;
  emu::testing::reference(c, pr, y64, hn64, cn64, &trace);
  const emu::testing::Grads g = emu::testing::reference_backward(c, pr, trace, dyt, dh64, dc64);

  const std::string what = "T=" + std::to_string(T) + " B=" + std::to_string(B) + " H=" + std::to_string(H) +
                           " P=" + std::to_string(s.proj_size) + " L=" + std::to_string(s.num_layers) +
                           " D=" + std::to_string(D) + " op=" + std::to_string(static_cast<int>(Op)) +
                           " sms=" + std::to_string(dev.sm_count);
  double err_hh = 0.0;
  const auto expect = [&](const std::string& name, const std::vector<float>& got, const std::vector<double>& want) {
    emu::testing::expect_close(name, got, want, tol, what);
  };
  expect("y", yt, y64);
  const std::vector<float> dxt = emu::testing::gather_rows(o.dx.data(), T, B, s.input_size, {pr.x_st, pr.x_sb});
  expect("dx", dxt, g.dx);
  expect("dh0", o.dh0, g.dh0);
  expect("dc0", o.dc0, g.dc0);
  for (int k = 0; k < s.num_layers; ++k) {
    const std::string l = "[" + std::to_string(k) + "]";
    expect("dW_ih" + l, o.w_ih[k], g.w_ih[k]);
    expect("dW_hh" + l, o.w_hh[k], g.w_hh[k]);
    if (s.bias) {
      expect("db" + l, o.bias[k], g.bias[k]);
      CHECK(o.bias2[k] == o.bias[k]);  // b_hh's gradient is b_ih's
    }
    if (s.peephole) expect("dpeep" + l, o.peep[k], g.peep[k]);
    if (s.proj_size > 0) expect("dW_hr" + l, o.w_hr[k], g.w_hr[k]);
    for (std::size_t i = 0; i < g.w_hh[k].size(); ++i)
      err_hh = std::max(err_hh, std::fabs(o.w_hh[k][i] - g.w_hh[k][i]));
  }
  return err_hh;
}

// fp32: float32 sums over at most ~100 terms of gradients of order 1.
constexpr double kTolF32 = 1e-4;

std::vector<Case> cases() {
  if (emu::detail::kTsan) return {{shape(5, 9, 2, true, 4, true), 3, 2, false, true, true, true}};
  return {
      {.s = shape(7, 13), .T = 5, .B = 3, .batch_first = false, .states = false, .lengths = false},
      {.s = shape(5, 9, 2, true), .T = 6, .B = 3, .batch_first = false, .states = true, .lengths = true},
      {.s = shape(6, 11, 2, true, 0, true), .T = 5, .B = 4, .batch_first = true, .states = true, .lengths = true},
      {.s = shape(3, 10, 1, false, 0, false, false),
       .T = 1,
       .B = 1,
       .batch_first = false,
       .states = true,
       .lengths = false},
      {.s = shape(9, 20, 1, true, 0, true), .T = 3, .B = 11, .batch_first = false, .states = true, .lengths = true},
      {.s = shape(6, 10, 3, true),
       .T = 4,
       .B = 3,
       .batch_first = true,
       .states = false,
       .lengths = true,
       .dropout = true},  // masks between three layers
      {.s = shape(6, 11, 2, true, 5, true),
       .T = 5,
       .B = 4,
       .batch_first = true,
       .states = true,
       .lengths = true,
       .dropout = true},  // projection with everything else
      {.s = shape(70, 33, 1, false, 7),
       .T = 4,
       .B = 2,
       .batch_first = false,
       .states = true,
       .lengths = false},  // projection, K > one slice, P < H
  };
}

EMU_TEST(train_f32_matches_float64) {
  std::uint64_t seed = 1;
  for (const Case& c : cases()) {
    for (const cd::DeviceLimits& dev : {kSmall, kNoRoom}) check_train<cd::Operand::kF32>(c, dev, kTolF32, seed++);
    if (!emu::detail::kTsan) check_train<cd::Operand::kF32>(c, cd::kH200, kTolF32, seed++);
  }
}

// Operand rounding in the forward's products, the backward's dh = dz W_hh and the weight and input gradients
// (tensor-core tiles): tf32 and f16 keep 10 mantissa bits, bf16 7; db and the peepholes' gradients are fp32.
EMU_TEST(train_low_precision_matches_float64) {
  if (emu::detail::kTsan) return;
  std::uint64_t seed = 100;
  for (const Case& c : {cases()[1], cases()[2], cases()[4], cases()[5], cases()[6]}) {
    CHECK(check_train<cd::Operand::kTF32>(c, kSmall, 5e-3, seed++) > 1e-5);
    CHECK(check_train<cd::Operand::kBF16>(c, kSmall, 5e-2, seed++) > 1e-4);
    CHECK(check_train<cd::Operand::kF16>(c, kNoRoom, 5e-3, seed++) > 1e-5);
  }
  // T * B = 72 positions: two row tiles of the tensor-core dx and a reduction tail in the weight gradients.
  const Case tall{.s = shape(20, 24), .T = 9, .B = 8, .batch_first = false, .states = true, .lengths = true};
  CHECK(check_train<cd::Operand::kBF16>(tall, kSmall, 5e-2, seed++) > 1e-4);
  CHECK(check_train<cd::Operand::kF16>(tall, kSmall, 5e-3, seed++) > 1e-5);
}

// Bitwise the same gradients under another order of the blocks and threads.
EMU_TEST(train_gradients_are_deterministic) {
  if (emu::detail::kTsan) return;
  const Case c = cases()[6];
  const Problem pr = emu::testing::draw(c, 7);
  std::vector<float> dy(static_cast<std::size_t>(c.T) * c.B * 2 * c.s.out_size(), 0.25f), dh(pr.h0.size(), 0.5f),
      dc(pr.c0.size(), -0.5f);
  const Outputs first = run_train<cd::Operand::kBF16>(c, kSmall, pr, dy, dh, dc);
  for (emu::Order order : {emu::Order::reverse, emu::Order::random}) {
    emu::set_schedule({order, 11});
    CHECK(run_train<cd::Operand::kBF16>(c, kSmall, pr, dy, dh, dc) == first);
  }
}

// The engine's strided row copies (x into a saved state as [T, B, I]; batch_first and back).
EMU_TEST(copy_rows_moves_every_element_once) {
  const int T = 3, B = 5, K = 7;
  std::vector<float> src(static_cast<std::size_t>(T) * B * K), dst(src.size(), NAN), back(src.size(), NAN);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
  EmuExec exec;
  cd::copy_rows(exec, {T, B, K, src.data(), K, T * K, dst.data(), B * K, K});  // [B, T, K] -> [T, B, K]
  cd::copy_rows(exec, {T, B, K, dst.data(), B * K, K, back.data(), K, T * K});
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < K; ++k) CHECK_EQ(dst[(t * B + b) * K + k], src[(b * T + t) * K + k]);
  CHECK(back == src);
}

EMU_TEST(backward_plan_for_reference_devices) {
  // H200, H=768: the forward's 6 units per block on 128 blocks; W_hh^T slice 6 x 3072 fp32 = 72 KiB on chip.
  cd::RecurrencePlan p = cd::recurrence_backward_plan(768, 0, 1, 16, 4, cd::kH200);
  CHECK_EQ(p.units, 6);
  CHECK_EQ(p.launch.grid.x, 128u);
  CHECK(p.weights_in_smem);
  CHECK(p.launch.cooperative);
  for (const cd::DeviceLimits& dev : {cd::kA100, cd::kH200}) {
    for (int H : {1, 7, 128, 768, 1000, 1024, 4096, 16384}) {
      for (int D : {1, 2}) {
        for (int P : {0, 1, H / 2}) {
          const cd::RecurrencePlan q = cd::recurrence_backward_plan(H, P, D, 256, 2, dev);
          const cd::RecurrencePlan f = cd::recurrence_plan(H, P, D, 256, 2, dev);
          if (16 * static_cast<std::size_t>(H) + 64 > dev.max_smem_per_block) {  // one fp32 row of 4H: too big
            CHECK_EQ(q.batch_chunk, 0);
            bool refused = false;
            try {
              cd::backward_plan(ModelShape{.input_size = 1, .hidden_size = H, .proj_size = P, .bidirectional = D == 2},
                                256, 2, dev);
            } catch (const std::invalid_argument& e) {
              refused = std::string(e.what()).find("hidden_size") == 0;
            }
            CHECK(refused);
            continue;
          }
          CHECK(q.batch_chunk >= 1);
          cd::backward_plan(ModelShape{.input_size = 1, .hidden_size = H, .proj_size = P, .bidirectional = D == 2}, 256,
                            2, dev);
          CHECK_EQ(q.units, f.units);  // the backward's blocks own the forward's units and outputs
          CHECK_EQ(q.punits, f.punits);
          CHECK(q.launch.grid.x * q.launch.grid.y <= static_cast<unsigned>(dev.sm_count));
          CHECK(static_cast<int>(q.launch.grid.x) * q.units >= H);
          CHECK(q.launch.dynamic_smem <= dev.max_smem_per_block);
        }
      }
    }
  }
}

}  // namespace
