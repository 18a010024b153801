// DLPack: the array exchange every framework speaks (torch, cupy, jax, numpy). The structs are DLPack's ABI
// (dlpack.h v0.8, the legacy "dltensor" capsule every producer can still give); declared here from the
// specification, not included, so the bindings build without it. Import: a producer's capsule becomes a View
// that owns it (its deleter runs when the View dies). Export: memory this library allocated becomes a capsule
// whose deleter frees it, for `framework.from_dlpack`.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fastlstm::bindings::dlpack {

namespace py = pybind11;

struct DLDevice {
  std::int32_t device_type;  // kDLCPU, kDLCUDA, ...
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;  // kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; null: compact row-major
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

constexpr std::int32_t kDLCPU = 1, kDLCUDA = 2;
constexpr std::uint8_t kDLUInt = 1, kDLFloat = 2;

// A consumed producer tensor (the capsule is renamed "used_dltensor", as the protocol says).
class View {
 public:
  // TypeError naming `name` when obj is not an unconsumed "dltensor" capsule.
  View(const py::handle& obj, const std::string& name);
  ~View();
  View(const View&) = delete;
  View& operator=(const View&) = delete;

  const DLTensor& tensor() const { return m_->dl_tensor; }
  void* data() const { return static_cast<char*>(m_->dl_tensor.data) + m_->dl_tensor.byte_offset; }
  std::vector<std::int64_t> shape() const;
  std::vector<std::int64_t> strides() const;  // in elements; compact row-major when the producer gave none
  // Strides as a C-contiguous array of this shape has them, ignoring axes of length 1.
  bool compact() const;

 private:
  DLManagedTensor* m_ = nullptr;
};

// A capsule for `data` (float32, compact row-major `shape`, on `device`); release(data, arg) frees it once the
// consumer is done with it (or when the capsule dies unconsumed). Takes ownership of `data`, also when it throws.
py::capsule export_f32(void* data, DLDevice device, const std::vector<std::int64_t>& shape,
                       void (*release)(void* data, int arg), int arg);

// What a capsule holds, without consuming it: {"device": (type, id), "dtype": (code, bits, lanes), "shape",
// "strides" (elements, compact when the producer gave none), "byte_offset", "first": the address of the first
// element, as View::data() reads it}. For tests of the import.
py::dict describe(const py::handle& obj);

}  // namespace fastlstm::bindings::dlpack
