// The measured bounds of the benchmark (FMA throughput, read bandwidth, the per-step exchange) and the
// activations' entry point for the accuracy tests.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/memory.h"
#include "cpu/registry.h"
#include "cpu/threads.h"
#include "fastlstm/cpu.h"

namespace fastlstm::cpu {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

const IsaProbes& probes_of(Isa isa) {
  const IsaProbes* p = find_probes(isa);
  require(p != nullptr, std::string("isa: ") + isa_name(isa) + " is not supported on this CPU");
  return *p;
}

// Runs P::member on the lease, doubling probe.count until one run lasts `seconds`; -> the members' work
// (probe.done[tid]: FLOPs, bytes) per second. The first run is a warm-up.
template <class P>
double timed_rate(TeamLease& lease, P& probe, double seconds) {
  lease.run(&P::member, &probe);
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    lease.run(&P::member, &probe);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt >= seconds || probe.count > (1L << 40)) {
      double total = 0;
      for (int i = 0; i < lease.size(); ++i) total += probe.done[i];
      return total / dt;
    }
    probe.count *= 2;
  }
}

}  // namespace

void activation(Isa isa, DType dtype, int which, const void* in, void* out, std::size_t n) {
  require(which == 0 || which == 1, "which: 0 (sigmoid) or 1 (tanh)");
  require(isa_supported(isa), std::string("isa: ") + isa_name(isa) + " is not supported on this CPU");
  const WeightFormat w = dtype == DType::kF64 ? WeightFormat::kF64 : WeightFormat::kF32;
  const KernelFamily* f = find_family(isa, dtype, w);
  require(f != nullptr, std::string("dtype: no ") + dtype_name(dtype) + " family for " + isa_name(isa));
  f->activation(which, in, out, n);
}

double fma_peak_gflops(Isa isa, int num_threads, double seconds) {
  struct Probe {
    const IsaProbes* probes;
    long count;  // iterations of the FMA loop
    double done[kMaxTeam];
    static void member(void* ctx, int tid, int) {
      auto* p = static_cast<Probe*>(ctx);
      p->done[tid] = p->probes->fma(p->count);
    }
  } probe{&probes_of(isa), 1 << 20, {}};
  TeamLease lease(num_threads);
  return timed_rate(lease, probe, seconds) / 1e9;
}

double read_bandwidth_gbs(Isa isa, int num_threads, std::size_t bytes_per_thread, double seconds) {
  const IsaProbes& probes = probes_of(isa);
  require(bytes_per_thread >= 4096 && bytes_per_thread <= (std::size_t(1) << 32),
          "bytes_per_thread: expected 4 KiB .. 4 GiB");
  TeamLease lease(num_threads);
  std::vector<AlignedBuffer> bufs;
  for (int i = 0; i < lease.size(); ++i) bufs.emplace_back(bytes_per_thread, /*zero=*/false);
  struct Probe {
    const IsaProbes* probes;
    std::vector<AlignedBuffer>* bufs;
    long count;  // sweeps over the buffer
    double done[kMaxTeam];
    static void member(void* ctx, int tid, int) {
      auto* p = static_cast<Probe*>(ctx);
      const AlignedBuffer& b = (*p->bufs)[tid];
      p->done[tid] = p->probes->read(b.data(), b.size(), p->count);
    }
    static void touch(void* ctx, int tid, int) {  // each thread's buffer first written by that thread
      auto* p = static_cast<Probe*>(ctx);
      std::memset((*p->bufs)[tid].data(), 1, (*p->bufs)[tid].size());
    }
  } probe{&probes, &bufs, std::max(1L, static_cast<long>((std::size_t(8) << 20) / bytes_per_thread)), {}};
  lease.run(&Probe::touch, &probe);  // and from then on the buffer sits in the cache level it fits
  return timed_rate(lease, probe, seconds) / 1e9;
}

double step_exchange_us(int num_threads, std::size_t bytes, int steps) {
  require(bytes >= 4 && bytes <= (std::size_t(1) << 24), "bytes: expected 4 B .. 16 MiB");
  require(steps >= 1, "steps: expected >= 1");
  TeamLease lease(num_threads);
  AlignedBuffer buf(2 * bytes);
  struct Probe {
    std::uint32_t* state[2];  // integers: the reads are vector loads, not a chain of float adds
    std::size_t n;
    int steps;
    Barrier barrier;
    std::uint32_t sink[kMaxTeam];
    static void member(void* ctx, int tid, int nthreads) {
      auto* p = static_cast<Probe*>(ctx);
      const std::size_t b0 = p->n * tid / nthreads, b1 = p->n * (tid + 1) / nthreads;
      std::uint32_t acc = 0;
      for (int s = 0; s < p->steps; ++s) {
        const std::uint32_t* cur = p->state[s & 1];
        for (std::size_t i = 0; i < p->n; ++i) acc ^= cur[i];
        std::uint32_t* next = p->state[(s + 1) & 1];
        for (std::size_t i = b0; i < b1; ++i) next[i] = acc;
        p->barrier.wait();
      }
      p->sink[tid] = acc;
    }
  };
  auto* words = static_cast<std::uint32_t*>(buf.data());
  Probe probe;
  probe.state[0] = words;
  probe.state[1] = words + bytes / 4;
  probe.n = bytes / 4;
  probe.steps = steps;
  probe.barrier.reset(lease.form(TeamLease::kWholeTeam));
  lease.run(&Probe::member, &probe);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  lease.run(&Probe::member, &probe);
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / steps;
}

}  // namespace fastlstm::cpu
