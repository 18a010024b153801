// The GPU-side driver of tools/gpu_check.sh for the fused cell (nvcc only, linked with the library's CUDA
// sources): `check` runs small shapes through the library's host entry point against a float64 reference
// (the program compute-sanitizer runs), `bench` times the kernel alone with CUDA events and prints one JSON
// object per shape. Usage: gpu_cell check | gpu_cell bench [repeats]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <vector>

#include "fastlstm/cuda.h"

namespace {

double sigmoid64(double x) {
  const double e = std::exp(-std::fabs(x));
  return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

void ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "gpu_cell: %s: %s\n", what, cudaGetErrorString(e));
  std::exit(2);
}

int check() {
  int failed = 0;
  const int shapes[][2] = {{1, 1}, {3, 7}, {16, 129}, {4, 1000}};
  for (const auto& s : shapes) {
    for (bool peephole : {false, true}) {
      const int B = s[0], H = s[1];
      const std::size_t n = static_cast<std::size_t>(B) * H;
      std::mt19937 rng(static_cast<unsigned>(B * 1000 + H));
      std::normal_distribution<float> normal;
      std::vector<float> z(4 * n), c_prev(n), p(3 * static_cast<std::size_t>(H)), h(n, NAN), c(n, NAN);
      for (float& v : z) v = 3.0f * normal(rng);
      for (float& v : c_prev) v = normal(rng);
      for (float& v : p) v = normal(rng);
      const float* pp = peephole ? p.data() : nullptr;
      fastlstm::cuda::cell_forward_host_f32(B, H, z.data(), c_prev.data(), pp, peephole ? pp + H : nullptr,
                                            peephole ? pp + 2 * H : nullptr, h.data(), c.data());
      double worst = 0.0;
      for (int b = 0; b < B; ++b) {
        for (int j = 0; j < H; ++j) {
          const std::size_t i = static_cast<std::size_t>(b) * H + j;
          const float* zr = z.data() + static_cast<std::size_t>(b) * 4 * H + j;
          double zi = zr[0], zf = zr[H], zg = zr[2 * H], zo = zr[3 * H];
          const double cp = c_prev[i];
          if (peephole) {
            zi += p[j] * cp;
            zf += p[H + j] * cp;
          }
          const double cn = sigmoid64(zf) * cp + sigmoid64(zi) * std::tanh(zg);
          if (peephole) zo += p[2 * H + j] * cn;
          const double hn = sigmoid64(zo) * std::tanh(cn);
          const double e = std::max(std::fabs(c[i] - cn) / (2e-6 + 2e-6 * std::fabs(cn)),
                                    std::fabs(h[i] - hn) / (2e-6 + 2e-6 * std::fabs(hn)));
          worst = std::isnan(e) ? INFINITY : std::max(worst, e);
        }
      }
      std::printf("cell B=%d H=%d peephole=%d: worst error / tolerance %.3f %s\n", B, H, peephole, worst,
                  worst <= 1.0 ? "ok" : "FAIL");
      failed += worst > 1.0;
    }
  }
  return failed == 0 ? 0 : 1;
}

// Kernel time alone (device buffers, no copies), median of `repeats` timed batches of 20 launches.
int bench(int repeats) {
  const int shapes[][2] = {{64, 1024}, {256, 4096}, {4096, 4096}, {16384, 8192}};
  for (const auto& s : shapes) {
    for (bool peephole : {false, true}) {
      const int B = s[0], H = s[1];
      const std::size_t n = static_cast<std::size_t>(B) * H;
      std::vector<float> host(6 * n + 3 * static_cast<std::size_t>(H));
      std::mt19937 rng(7);
      std::normal_distribution<float> normal;
      for (float& v : host) v = normal(rng);  // never zeros: they can run faster than real data
      float* d = nullptr;
      ok(cudaMalloc(&d, host.size() * sizeof(float)), "cudaMalloc");
      ok(cudaMemcpy(d, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
      fastlstm::cuda::CellParams prm;
      prm.B = B;
      prm.H = H;
      prm.z = d;
      prm.c_prev = d + 4 * n;
      prm.h = d + 5 * n;
      prm.c = const_cast<float*>(prm.c_prev);
      if (peephole) {
        prm.p_i = d + 6 * n;
        prm.p_f = prm.p_i + H;
        prm.p_o = prm.p_f + H;
      }
      cudaEvent_t t0, t1;
      ok(cudaEventCreate(&t0), "cudaEventCreate");
      ok(cudaEventCreate(&t1), "cudaEventCreate");
      for (int i = 0; i < 5; ++i) fastlstm::cuda::cell_forward_f32(prm, nullptr);  // warm-up
      std::vector<float> ms;
      for (int r = 0; r < repeats; ++r) {
        ok(cudaEventRecord(t0), "cudaEventRecord");
        for (int i = 0; i < 20; ++i) fastlstm::cuda::cell_forward_f32(prm, nullptr);
        ok(cudaEventRecord(t1), "cudaEventRecord");
        ok(cudaEventSynchronize(t1), "cudaEventSynchronize");
        float t = 0.0f;
        ok(cudaEventElapsedTime(&t, t0, t1), "cudaEventElapsedTime");
        ms.push_back(t / 20.0f);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const double bytes = 28.0 * static_cast<double>(n);  // z 16 + c_prev 4 + c 4 + h 4 bytes per element
      std::printf(
          "{\"row\": \"cell_forward_f32\", \"impl\": \"fastlstm\", \"B\": %d, \"H\": %d, \"peephole\": %s, "
          "\"median_us\": %.3f, \"min_us\": %.3f, \"GBps\": %.1f, \"repeats\": %d}\n",
          B, H, peephole ? "true" : "false", med * 1e3, ms.front() * 1e3, bytes / (med * 1e-3) / 1e9, repeats);
      ok(cudaEventDestroy(t0), "cudaEventDestroy");
      ok(cudaEventDestroy(t1), "cudaEventDestroy");
      ok(cudaFree(d), "cudaFree");
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 2 && std::strcmp(argv[1], "check") == 0) return check();
    if (argc >= 2 && std::strcmp(argv[1], "bench") == 0) return bench(argc >= 3 ? std::atoi(argv[2]) : 15);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_cell: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: gpu_cell check | gpu_cell bench [repeats]\n");
  return 2;
}
