// Prints, as JSON, every kernel's launch budget (threads per block, dynamic shared memory per block) as its
// plan asks for it on the reference devices, over the shapes the plan can see. tools/cuda_static_check.py
// compares it with what ptxas reports for each kernel (registers x threads, static + dynamic shared memory).
// A new kernel adds its line here.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cell_pointwise.cuh"
#include "kernels/input_proj.cuh"
#include "kernels/recurrence.cuh"
#include "kernels/train.cuh"

namespace {

using fastlstm::cuda::detail::DeviceLimits;
using fastlstm::cuda::detail::LaunchPlan;
namespace cd = fastlstm::cuda::detail;

struct Budget {
  std::string kernel;  // a substring of the mangled name ptxas reports
  unsigned threads = 0;
  std::size_t dynamic_smem = 0;  // on the A100 (sm_80) and the H200 (sm_90): each architecture's own limit
  std::size_t dynamic_smem_sm90 = 0;
  bool cooperative = false;
};

// The largest block and dynamic shared memory a plan asks for, over shapes, on each reference device.
template <class PlanOf>
Budget worst(const char* kernel, PlanOf plan_of, const std::vector<long long>& sizes) {
  Budget b{kernel};
  for (const DeviceLimits& dev : {fastlstm::cuda::detail::kA100, fastlstm::cuda::detail::kH200}) {
    for (long long n : sizes) {
      const LaunchPlan p = plan_of(n, dev);
      b.threads = std::max(b.threads, p.block.x * p.block.y * p.block.z);
      std::size_t& smem = dev.sm_count == fastlstm::cuda::detail::kA100.sm_count ? b.dynamic_smem : b.dynamic_smem_sm90;
      smem = std::max(smem, p.dynamic_smem);
      b.cooperative = b.cooperative || p.cooperative;
    }
  }
  return b;
}

const std::vector<long long> kHiddenSizes = {1, 7, 128, 256, 512, 768, 1000, 1024, 2048, 4096, 8192};

// For a recurrence plan (H, P, D, B, operand bytes, device) -> RecurrencePlan: the plan of H on a device whose
// launch asks for the most shared memory over directions, projections, batches and operand widths.
template <class Plan>
auto recurrence_worst(Plan plan) {
  return [plan](long long n, const DeviceLimits& dev) {
    LaunchPlan w;
    for (int D : {1, 2}) {
      for (int P : {0, 1, int(n) / 2}) {
        for (int B : {1, 16, 256, 4096}) {
          for (std::size_t bytes : {2, 4}) {
            const LaunchPlan p = plan(int(n), P, D, B, bytes, dev).launch;
            if (p.dynamic_smem >= w.dynamic_smem) w = p;
          }
        }
      }
    }
    return w;
  };
}

}  // namespace

int main() {
  const std::vector<Budget> budgets = {
      worst("cell_forward_f32_kernel", fastlstm::cuda::detail::cell_forward_plan,
            {1, 7, 255, 256, 257, 100000, 1LL << 20, 1LL << 31, 1LL << 40}),
      // n = T*B rows; the block tile and its static shared memory do not depend on the shape.
      worst("input_proj_simt_kernel",
            [](long long n, const DeviceLimits&) { return cd::input_proj_plan(int(n), 4096); }, {1, 64, 100000}),
      worst("input_proj_mma_kernel", [](long long n, const DeviceLimits&) { return cd::input_proj_plan(int(n), 4096); },
            {1, 64, 100000}),
      // n = H; every direction count, projection, batch and operand width the plans can see (the backward's
      // sizes whose dz rows fit: larger H is refused by its plan).
      worst("recurrence_kernel", recurrence_worst(cd::recurrence_plan), kHiddenSizes),
      worst("recurrence_backward_kernel", recurrence_worst(cd::recurrence_backward_plan), kHiddenSizes),
      // 64 x 64 output tiles, static shared memory only.
      worst("outer_grad_kernel", [](long long n, const DeviceLimits&) { return cd::grad_tile_plan(n, n); }, {1, 4096}),
      worst("input_grad_kernel", [](long long n, const DeviceLimits&) { return cd::grad_tile_plan(n, n); }, {1, 4096}),
      // One thread per output element, no shared memory.
      worst("peep_grad_kernel", [](long long n, const DeviceLimits&) { return cd::elementwise_plan(n, 2); }, {1, 4096}),
      worst("copy_rows_kernel", [](long long n, const DeviceLimits&) { return cd::elementwise_plan(n); }, {1, 1 << 20}),
      worst("transpose_kernel", [](long long n, const DeviceLimits&) { return cd::elementwise_plan(n, 2); },
            {1, 1 << 20}),
  };
  std::printf("[\n");
  for (std::size_t i = 0; i < budgets.size(); ++i) {
    const Budget& b = budgets[i];
    std::printf(
        "  {\"kernel\": \"%s\", \"threads\": %u, \"dynamic_smem\": {\"80\": %zu, \"90\": %zu}, \"cooperative\": "
        "%s}%s\n",
        b.kernel.c_str(), b.threads, b.dynamic_smem, b.dynamic_smem_sm90, b.cooperative ? "true" : "false",
        i + 1 < budgets.size() ? "," : "");
  }
  std::printf("]\n");
}
