// The semantics probe (cuda/testing/probe) on the execution model: mma fragments of every kind against a
// float64 reference (exactly, on integer data), ldmatrix in all its forms, shuffles and votes with masks and
// widths, grid sync. The same cases run on the GPU in tools/gpu_check.sh.
#include "harness.h"
#include "probe/probe.h"

namespace {

struct Backend {
  std::vector<std::shared_ptr<void>> owned;
  template <class T>
  T* alloc(std::size_t n) {
    std::shared_ptr<T[]> p(new T[n]());
    owned.push_back(p);
    return p.get();
  }
  template <class T>
  void to_device(T* d, const std::vector<T>& h) {
    std::copy(h.begin(), h.end(), d);
  }
  template <class T>
  std::vector<T> to_host(const T* d, std::size_t n) {
    return std::vector<T>(d, d + n);
  }
  template <class... P, class... A>
  void launch(unsigned grid, unsigned block, std::size_t smem, bool cooperative, void (*k)(P...), A... args) {
    fastlstm::emu::LaunchConfig cfg{dim3(grid), dim3(block), smem};
    cfg.cooperative = cooperative;
    fastlstm::emu::launch(cfg, k, args...);
  }
};

void check(const fastlstm::probe::Result& r) {
  if (!r.ok) fastlstm::emu::testing::fail(__FILE__, __LINE__, r.name + ": " + r.detail);
}

EMU_TEST(probe_mma_fragments_against_float64) {
  Backend be;
  std::uint64_t seed = 100;
  for (auto k : {fastlstm::probe::Mma::bf16, fastlstm::probe::Mma::f16, fastlstm::probe::Mma::tf32}) {
    check(fastlstm::probe::run_mma(be, k, "int", seed++));
    check(fastlstm::probe::run_mma(be, k, "random", seed++));
  }
  check(fastlstm::probe::run_mma(be, fastlstm::probe::Mma::tf32, "unrounded", seed++));
}

EMU_TEST(probe_ldmatrix) {
  Backend be;
  check(fastlstm::probe::run_ldmatrix(be));
}

EMU_TEST(probe_shuffles_votes_grid_sync) {
  Backend be;
  check(fastlstm::probe::run_shuffles(be));
  check(fastlstm::probe::run_grid_sync(be, 6, 3));
}

}  // namespace
