// A test-only kernel that must use local memory (a stack array written and read at run-time indices): the static checks
// compile it without the local-memory warning and assert that its SASS shows LDL / STL, proving that the
// "no local memory in the library's kernels" assert can see local memory. Never part of the library.
namespace fastlstm::cuda::selftest {

__global__ void local_memory_selftest(const int* idx, float* out) {
  float stack[64];
  for (int i = 0; i < 64; ++i) stack[(i * 7 + idx[i]) & 63] = out[i];  // scattered writes, run-time indices
  out[threadIdx.x] = stack[idx[threadIdx.x] & 63];
}

}  // namespace fastlstm::cuda::selftest
