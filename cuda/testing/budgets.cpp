// Prints, as JSON, every kernel's launch budget (threads per block, dynamic shared memory per block) as its
// plan asks for it on the reference devices, over the shapes the plan can see. tools/cuda_static_check.py
// compares it with what ptxas reports for each kernel (registers x threads, static + dynamic shared memory).
// A new kernel adds its line here.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cell_pointwise.cuh"

namespace {

using fastlstm::cuda::detail::DeviceLimits;
using fastlstm::cuda::detail::LaunchPlan;

struct Budget {
  std::string kernel;  // a substring of the mangled name ptxas reports
  unsigned threads = 0;
  std::size_t dynamic_smem = 0;
  bool cooperative = false;
};

// The largest block and dynamic shared memory a plan asks for, over shapes and both reference devices.
template <class PlanOf>
Budget worst(const char* kernel, PlanOf plan_of, const std::vector<long long>& sizes) {
  Budget b{kernel};
  for (const DeviceLimits& dev : {fastlstm::cuda::detail::kA100, fastlstm::cuda::detail::kH200}) {
    for (long long n : sizes) {
      const LaunchPlan p = plan_of(n, dev);
      b.threads = std::max(b.threads, p.block.x * p.block.y * p.block.z);
      b.dynamic_smem = std::max(b.dynamic_smem, p.dynamic_smem);
      b.cooperative = b.cooperative || p.cooperative;
    }
  }
  return b;
}

}  // namespace

int main() {
  const std::vector<Budget> budgets = {
      worst("cell_forward_f32_kernel", fastlstm::cuda::detail::cell_forward_plan,
            {1, 7, 255, 256, 257, 100000, 1LL << 20, 1LL << 31, 1LL << 40}),
  };
  std::printf("[\n");
  for (std::size_t i = 0; i < budgets.size(); ++i) {
    const Budget& b = budgets[i];
    std::printf("  {\"kernel\": \"%s\", \"threads\": %u, \"dynamic_smem\": %zu, \"cooperative\": %s}%s\n",
                b.kernel.c_str(), b.threads, b.dynamic_smem, b.cooperative ? "true" : "false",
                i + 1 < budgets.size() ? "," : "");
  }
  std::printf("]\n");
}
