// The semantics probe: one source, two builds. nvcc (-x cu) runs it on the GPU; the host compiler runs it on
// the execution model. Each checks every result against the same expectations and writes the raw results to
// the file given as argv[1], so tools/gpu_check.sh can also diff hardware against the model line by line.
// Usage: probe [raw-output-file]; exit 0 when every case meets its expectation.
#include <cstdio>
#include <memory>
#include <vector>

#include "probe/probe.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "probe: %s: %s\n", what, cudaGetErrorString(e));
  std::exit(2);
}

struct Backend {
  std::vector<void*> owned;
  ~Backend() {
    for (void* p : owned) cudaFree(p);
  }
  template <class T>
  T* alloc(std::size_t n) {
    void* p = nullptr;
    cuda_ok(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    owned.push_back(p);
    return static_cast<T*>(p);
  }
  template <class T>
  void to_device(T* d, const std::vector<T>& h) {
    cuda_ok(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  template <class T>
  std::vector<T> to_host(const T* d, std::size_t n) {
    std::vector<T> h(n);
    cuda_ok(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return h;
  }
  template <class... P, class... A>
  void launch(unsigned grid, unsigned block, std::size_t smem, bool cooperative, void (*k)(P...), A... args) {
    if (cooperative) {
      void* argv[] = {static_cast<void*>(&args)...};
      cuda_ok(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(k), dim3(grid), dim3(block), argv, smem, nullptr),
              "cudaLaunchCooperativeKernel");
    } else {
      k<<<grid, block, smem>>>(args...);
      cuda_ok(cudaGetLastError(), "launch");
    }
    cuda_ok(cudaDeviceSynchronize(), "kernel");
  }
};

unsigned grid_blocks() {
  int sms = 0;
  cuda_ok(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
  return static_cast<unsigned>(sms);  // one 128-thread block per SM: always co-resident
}
const char* kWhere = "GPU";

}  // namespace
#else
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

unsigned grid_blocks() { return 6; }
const char* kWhere = "execution model";

}  // namespace
#endif

int main(int argc, char** argv) {
  Backend be;
  const auto results = fastlstm::probe::run_all(be, grid_blocks());
  std::FILE* raw = argc > 1 ? std::fopen(argv[1], "w") : nullptr;
  int failed = 0;
  for (const auto& r : results) {
    std::printf("%-5s %-22s %s\n", r.ok ? "ok" : "FAIL", r.name.c_str(), r.detail.c_str());
    failed += !r.ok;
    for (const auto& line : r.raw) {
      if (raw != nullptr) std::fprintf(raw, "%s %s\n", r.name.c_str(), line.c_str());
    }
  }
  if (raw != nullptr) std::fclose(raw);
  std::printf("probe on the %s: %zu of %zu cases meet the expectations\n", kWhere, results.size() - failed,
              results.size());
  return failed == 0 ? 0 : 1;
}
