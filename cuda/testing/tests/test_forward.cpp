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
#include "lstm_model.h"
#include "orchestration.h"

namespace {

namespace emu = fastlstm::emu;
namespace cd = fastlstm::cuda::detail;
using fastlstm::ModelShape;

using Case = emu::testing::LstmCase;
using emu::testing::EmuExec;
using emu::testing::kNoRoom;
using emu::testing::kSmall;
using emu::testing::Problem;
using emu::testing::shape;

// Returns the largest |y - y64|.
template <cd::Operand Op>
double check_forward(const Case& c, const cd::DeviceLimits& dev, double tol, std::uint64_t seed) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), L = s.num_layers, T = c.T, B = c.B;
  const Problem pr = emu::testing::draw(c, seed);
  const int I = s.input_size;
  // Packed as the engine packs them (kernels/pack.h), the image used in place.
  const cd::PackedImage image = cd::pack_image<Op>(s, pr.layers.data());
  const std::vector<cd::PackedLayer<Op>> layers = cd::layer_views<Op>(image, image.bytes.data());

  const emu::testing::RowStrides ys = emu::testing::user_layout(c, D * R);
  std::vector<float> y(static_cast<std::size_t>(T) * B * D * R, NAN), hn(pr.h0.size(), NAN), cn(pr.c0.size(), NAN);
  const cd::ForwardLayout layout = cd::forward_layout(s, T, B);
  std::vector<unsigned char> workspace(layout.total, 0xff);  // NaN-filled floats
  cd::ForwardIO io;
  io.T = T;
  io.B = B;
  io.x = pr.x.data();
  io.x_st = pr.x_st;
  io.x_sb = pr.x_sb;
  io.h0 = c.states ? pr.h0.data() : nullptr;
  io.c0 = c.states ? pr.c0.data() : nullptr;
  io.lengths = c.lengths ? pr.len.data() : nullptr;
  io.y = y.data();
  io.y_st = ys.st;
  io.y_sb = ys.sb;
  io.h_n = hn.data();
  io.c_n = cn.data();
  EmuExec exec;
  cd::forward_sequence<Op>(exec, dev, s, layers.data(), io, workspace.data());

  std::vector<double> y64, hn64, cn64;
  emu::testing::reference(c, pr, y64, hn64, cn64);
  const std::vector<float> yt = emu::testing::gather_rows(y.data(), T, B, D * R, ys);  // as [T][B][D*R]
  const std::string what = "T=" + std::to_string(T) + " B=" + std::to_string(B) + " I=" + std::to_string(I) +
                           " H=" + std::to_string(H) + " P=" + std::to_string(s.proj_size) + " L=" + std::to_string(L) +
                           " D=" + std::to_string(D) + " op=" + std::to_string(static_cast<int>(Op)) +
                           " sms=" + std::to_string(dev.sm_count);
  const auto expect = [&](const char* name, const std::vector<float>& got, const std::vector<double>& want) {
    emu::testing::expect_close(name, got, want, tol, what);
  };
  expect("y", yt, y64);
  expect("h_n", hn, hn64);
  expect("c_n", cn, cn64);
  double err = 0.0;
  for (std::size_t i = 0; i < yt.size(); ++i) err = std::max(err, std::fabs(yt[i] - y64[i]));
  return err;
}

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
