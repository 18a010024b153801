// The CPU engine's entry points: engines by key, what each kernel family runs, threads, and the probes and
// activations the benchmark and the tests measure.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "fastlstm/engine.h"
#include "fastlstm/isa.h"

namespace fastlstm::cpu {

// The CPU engine for `key` on the kernel families of `isa`: the ISA's own family for the key, else (a precision
// whose instructions this CPU lacks, e.g. bf16 without AVX512_BF16) the widest narrower ISA's. Throws
// std::invalid_argument naming `precision` (and what this CPU offers) when no family for the key is built and
// runnable here, or naming `isa` when the ISA is not supported.
std::shared_ptr<const Engine> make_engine(Isa isa, const EngineKey& key);

// The precisions an engine of `isa` runs for a caller's dtype (kDefault first), and whether natively: on the
// ISA's own family with the precision's own instructions (vdpbf16ps, vpdpbusd), not a narrower ISA's emulation.
struct PrecisionSupport {
  Precision precision;
  bool native;
};
std::vector<PrecisionSupport> precisions(Isa isa, DType dtype);

// A description of every registered kernel family: "avx512 float32/float32 (runnable)".
std::vector<std::string> describe_families();

// Element-wise sigmoid (which = 0) or tanh (1) of a family of `isa` in `dtype`, n elements: the tests' check
// of the activations' error bound.
void activation(Isa isa, DType dtype, int which, const void* in, void* out, std::size_t n);

// The measured float32 FMA throughput of an ISA's kernels on num_threads threads (GFLOP/s), from a
// register-only loop run for about `seconds`: the benchmark's peak.
double fma_peak_gflops(Isa isa, int num_threads, double seconds);

// The measured read bandwidth (GB/s, all threads together) of an ISA's vector loads sweeping a private
// buffer of `bytes_per_thread` on each of num_threads threads, for about `seconds`: the bound of a call that
// streams that much weight per thread and step (L2-sized: the L2 rate; larger: L3 or DRAM).
double read_bandwidth_gbs(Isa isa, int num_threads, std::size_t bytes_per_thread, double seconds);

// The measured cost (microseconds) of one step's exchange on num_threads threads, as the recurrence does it:
// each thread writes its share of a `bytes` state vector, all meet at the barrier, each reads the whole
// vector. The per-step floor of a split recurrence beside the weight streaming, which cannot overlap it.
double step_exchange_us(int num_threads, std::size_t bytes, int steps);

// The team size of a call that does not say: set_default_num_threads(n), else the hardware's threads.
int default_num_threads();
void set_default_num_threads(int n);

}  // namespace fastlstm::cpu
