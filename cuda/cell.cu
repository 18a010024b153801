// The CUDA engine's fused pointwise LSTM cell (gates -> c, h of one step) with its launchers, plus the
// engine's device queries. Helpers are file-local; move them to a shared .cuh when a second .cu needs them.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "fastlstm_cuda.h"

namespace fastlstm::cuda {
namespace detail {
namespace {  // internal linkage: later .cu files may define their own helpers without ODR clashes

// Turns a failed runtime call into the engine's exception. The error is also cleared from the runtime's
// "last error" slot (for non-sticky errors such as out of memory), so a later cudaGetLastError() after a
// kernel launch does not report this failure a second time against an innocent launch.
void check(cudaError_t err, const char* call) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  std::string msg = std::string("fastlstm CUDA error in ") + call + ": " + cudaGetErrorString(err);
  if (err == cudaErrorMemoryAllocation) throw CudaOutOfMemory(msg, static_cast<int>(err));
  throw CudaError(msg, static_cast<int>(err));
}

// Runtime flags become template parameters here and only here (the launch site), so the kernels carry
// no per-element branches on them.
template <class F>
void bool_switch(bool flag, F&& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// One device allocation, freed on scope exit (also when an exception unwinds through it).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) { check(cudaMalloc(&ptr_, bytes), "cudaMalloc"); }
  ~DeviceBuffer() {
    // A destructor must not throw; a failure here is a sticky context error that the next checked
    // call reports anyway, so only clear the slot.
    if (ptr_ != nullptr && cudaFree(ptr_) != cudaSuccess) (void)cudaGetLastError();
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* floats() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

// sigmoid without overflow for any x: exp of -|x| lies in (0, 1], and for x < 0 the result e/(1+e) keeps
// full relative accuracy down to the denormals (1 - 1/(1+e^-x) would cancel). NaN propagates.
__host__ __device__ inline float sigmoid_f32(float x) {
  const float e = expf(-fabsf(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

// The math of API.md for one (b, j) element. Written once for host and device so a host program can
// check it without a GPU.
template <bool kPeephole>
__host__ __device__ inline void cell_point_f32(float zi, float zf, float zg, float zo, float c_prev, float p_i,
                                               float p_f, float p_o, float* h, float* c) {
  if constexpr (kPeephole) {
    zi += p_i * c_prev;
    zf += p_f * c_prev;
  }
  const float i = sigmoid_f32(zi);
  const float f = sigmoid_f32(zf);
  const float g = tanhf(zg);
  const float cn = f * c_prev + i * g;
  if constexpr (kPeephole) zo += p_o * cn;
  const float o = sigmoid_f32(zo);
  *c = cn;
  *h = o * tanhf(cn);
}

constexpr int kCellBlock = 256;

// Element idx = b*H + j of [B,H]; z row b holds the four gate blocks at b*4H + {0,1,2,3}*H + j, so
// consecutive threads read consecutive addresses in each of the five input streams (coalesced).
// Index is uint32_t when every z index fits (cheaper division), else int64_t.
// c_prev and c are not __restrict__: they may be the same array (each thread reads its element before it
// writes it, and no thread touches another's element, so the in-place update is race-free).
template <bool kPeephole, typename Index>
__global__ void __launch_bounds__(kCellBlock)
    cell_forward_f32_kernel(Index n, Index H, const float* __restrict__ z, const float* c_prev,
                            const float* __restrict__ p_i, const float* __restrict__ p_f,
                            const float* __restrict__ p_o, float* __restrict__ h, float* c) {
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index idx = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + threadIdx.x; idx < n;
       idx += stride) {
    const Index b = idx / H;
    const Index j = idx - b * H;
    const float* zr = z + b * (4 * H) + j;
    float pi = 0.0f, pf = 0.0f, po = 0.0f;
    if constexpr (kPeephole) {
      pi = p_i[j];
      pf = p_f[j];
      po = p_o[j];
    }
    float hv, cv;
    cell_point_f32<kPeephole>(zr[0], zr[H], zr[2 * H], zr[3 * H], c_prev[idx], pi, pf, po, &hv, &cv);
    c[idx] = cv;
    h[idx] = hv;
  }
}

template <bool kPeephole, typename Index>
void launch_cell_forward_f32(const CellParams& p, cudaStream_t stream) {
  const std::int64_t n = static_cast<std::int64_t>(p.B) * p.H;
  int device = 0, sms = 0, threads_per_sm = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device),
        "cudaDeviceGetAttribute");
  // One full wave of resident blocks at most; the grid-stride loop covers the rest, so huge B*H never
  // needs a grid larger than the device can hold at once.
  const std::int64_t wave = static_cast<std::int64_t>(sms) * std::max(1, threads_per_sm / kCellBlock);
  const std::int64_t blocks = std::max<std::int64_t>(1, std::min((n + kCellBlock - 1) / kCellBlock, wave));
  cell_forward_f32_kernel<kPeephole, Index><<<static_cast<unsigned>(blocks), kCellBlock, 0, stream>>>(
      static_cast<Index>(n), static_cast<Index>(p.H), p.z, p.c_prev, p.p_i, p.p_f, p.p_o, p.h, p.c);
  check(cudaGetLastError(), "cell_forward_f32 kernel launch");
}

// Byte ranges [a, a+an) and [b, b+bn) share at least one byte.
bool overlaps(const void* a, std::size_t an, const void* b, std::size_t bn) {
  const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
  return x < y + bn && y < x + an;
}

// Argument checks shared by the device and host entry points (they do not dereference anything).
void validate(const CellParams& p) {
  if (p.B < 1) throw std::invalid_argument("fastlstm cell_forward_f32: B must be >= 1, got " + std::to_string(p.B));
  if (p.H < 1) throw std::invalid_argument("fastlstm cell_forward_f32: H must be >= 1, got " + std::to_string(p.H));
  // Every z index and byte count must fit a signed 64-bit / size_t value (only absurd sizes fail).
  const std::uint64_t n = static_cast<std::uint64_t>(p.B) * static_cast<std::uint64_t>(p.H);
  if (n > static_cast<std::uint64_t>(PTRDIFF_MAX) / (16 * sizeof(float)))
    throw std::invalid_argument("fastlstm cell_forward_f32: B*H is too large");
  if (p.z == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: z is null");
  if (p.c_prev == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: c_prev is null");
  if (p.h == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: h is null");
  if (p.c == nullptr) throw std::invalid_argument("fastlstm cell_forward_f32: c is null");
  const int given = (p.p_i != nullptr) + (p.p_f != nullptr) + (p.p_o != nullptr);
  if (given != 0 && given != 3)
    throw std::invalid_argument("fastlstm cell_forward_f32: p_i, p_f, p_o: give all three peepholes or none");
  const std::size_t zb = 4 * n * sizeof(float), sb = n * sizeof(float);
  if (p.c != p.c_prev && overlaps(p.c, sb, p.c_prev, sb))
    throw std::invalid_argument("fastlstm cell_forward_f32: c overlaps c_prev without being the same array");
  if (overlaps(p.c, sb, p.z, zb)) throw std::invalid_argument("fastlstm cell_forward_f32: c overlaps z");
  if (overlaps(p.h, sb, p.z, zb) || overlaps(p.h, sb, p.c_prev, sb) || overlaps(p.h, sb, p.c, sb))
    throw std::invalid_argument("fastlstm cell_forward_f32: h overlaps z, c_prev or c");
}

}  // namespace
}  // namespace detail

int device_count() {
  int n = 0;
  // No driver, no device, or a driver older than this runtime: all mean "no CUDA here", not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

DeviceInfo device_info(int index) {
  const int count = device_count();
  if (index < 0 || index >= count)
    throw std::invalid_argument("fastlstm device_info: index must be in [0, " + std::to_string(count) + "), got " +
                                std::to_string(index));
  cudaDeviceProp prop{};
  detail::check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.total_mem = prop.totalGlobalMem;
  return info;
}

void cell_forward_f32(const CellParams& p, void* stream) {
  detail::validate(p);
  const auto s = static_cast<cudaStream_t>(stream);
  // The largest z index is 4*B*H - 1: 32-bit indices when that fits.
  const bool small = static_cast<std::uint64_t>(p.B) * static_cast<std::uint64_t>(p.H) * 4 <= UINT32_MAX;
  detail::bool_switch(p.p_i != nullptr, [&](auto peephole) {
    constexpr bool kPeephole = decltype(peephole)::value;
    if (small) {
      detail::launch_cell_forward_f32<kPeephole, std::uint32_t>(p, s);
    } else {
      detail::launch_cell_forward_f32<kPeephole, std::int64_t>(p, s);
    }
  });
}

void cell_forward_host_f32(int B, int H, const float* z, const float* c_prev, const float* p_i, const float* p_f,
                           const float* p_o, float* h, float* c) {
  CellParams hp;
  hp.B = B;
  hp.H = H;
  hp.z = z;
  hp.c_prev = c_prev;
  hp.p_i = p_i;
  hp.p_f = p_f;
  hp.p_o = p_o;
  hp.h = h;
  hp.c = c;
  detail::validate(hp);  // on the host pointers: same rules, checked before any CUDA call
  const std::size_t n = static_cast<std::size_t>(B) * static_cast<std::size_t>(H);
  const bool peephole = p_i != nullptr;
  // One allocation carved into z [B,4H] | c [B,H] | h [B,H] | p_i, p_f, p_o [H] each; c is updated in
  // place (device c_prev == c), which also exercises the aliasing the kernel allows.
  const std::size_t floats = 6 * n + (peephole ? 3 * static_cast<std::size_t>(H) : 0);
  detail::DeviceBuffer buf(floats * sizeof(float));
  float* dz = buf.floats();
  float* dc = dz + 4 * n;
  float* dh = dc + n;
  float* dp = dh + n;
  detail::check(cudaMemcpy(dz, z, 4 * n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  detail::check(cudaMemcpy(dc, c_prev, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  CellParams dp_params;
  dp_params.B = B;
  dp_params.H = H;
  dp_params.z = dz;
  dp_params.c_prev = dc;
  dp_params.h = dh;
  dp_params.c = dc;
  if (peephole) {
    const std::size_t hb = static_cast<std::size_t>(H) * sizeof(float);
    detail::check(cudaMemcpy(dp, p_i, hb, cudaMemcpyHostToDevice), "cudaMemcpy");
    detail::check(cudaMemcpy(dp + H, p_f, hb, cudaMemcpyHostToDevice), "cudaMemcpy");
    detail::check(cudaMemcpy(dp + 2 * H, p_o, hb, cudaMemcpyHostToDevice), "cudaMemcpy");
    dp_params.p_i = dp;
    dp_params.p_f = dp + H;
    dp_params.p_o = dp + 2 * H;
  }
  cell_forward_f32(dp_params, nullptr);
  // Device-to-host copies on the legacy default stream wait for the kernel; a fault in it surfaces here.
  detail::check(cudaMemcpy(h, dh, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  detail::check(cudaMemcpy(c, dc, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
}

// ---- Explicit instantiations ----------------------------------------------------------------------------
namespace detail {
namespace {
template __global__ void cell_forward_f32_kernel<false, std::uint32_t>(std::uint32_t, std::uint32_t, const float*,
                                                                      const float*, const float*, const float*,
                                                                      const float*, float*, float*);
template __global__ void cell_forward_f32_kernel<true, std::uint32_t>(std::uint32_t, std::uint32_t, const float*,
                                                                     const float*, const float*, const float*,
                                                                     const float*, float*, float*);
template __global__ void cell_forward_f32_kernel<false, std::int64_t>(std::int64_t, std::int64_t, const float*,
                                                                     const float*, const float*, const float*,
                                                                     const float*, float*, float*);
template __global__ void cell_forward_f32_kernel<true, std::int64_t>(std::int64_t, std::int64_t, const float*,
                                                                    const float*, const float*, const float*,
                                                                    const float*, float*, float*);
template void launch_cell_forward_f32<false, std::uint32_t>(const CellParams&, cudaStream_t);
template void launch_cell_forward_f32<true, std::uint32_t>(const CellParams&, cudaStream_t);
template void launch_cell_forward_f32<false, std::int64_t>(const CellParams&, cudaStream_t);
template void launch_cell_forward_f32<true, std::int64_t>(const CellParams&, cudaStream_t);
}  // namespace
}  // namespace detail

}  // namespace fastlstm::cuda
