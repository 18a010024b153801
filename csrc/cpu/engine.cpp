// The CPU engine: maps a key (dtype, precision, cell) on an ISA to a registered kernel family, and
// implements the engine seam (fastlstm/engine.h) on the drivers.
#include <stdexcept>
#include <string>

#include "cpu/packed.h"
#include "cpu/registry.h"
#include "fastlstm/cpu.h"

namespace fastlstm::cpu {
namespace {

// What a precision means on the CPU for a caller's dtype: the compute type and the weight format a family
// must have. False when the CPU engine has no such mode at all (tf32, fp16: GPU only; bf16/int8 on float64).
bool family_key(DType dtype, Precision p, DType* compute, WeightFormat* weights) {
  switch (p) {
    case Precision::kDefault:
      if (dtype == DType::kF32) {
        *compute = DType::kF32;
        *weights = WeightFormat::kF32;
        return true;
      }
      if (dtype == DType::kF64) {
        *compute = DType::kF64;
        *weights = WeightFormat::kF64;
        return true;
      }
      return false;
    case Precision::kBF16:
      *compute = DType::kF32;
      *weights = WeightFormat::kBF16;
      return dtype == DType::kF32;
    case Precision::kInt8:
      *compute = DType::kF32;
      *weights = WeightFormat::kI8RowScaled;
      return dtype == DType::kF32;
    default:
      return false;
  }
}

// The family a key runs on with `isa`: the ISA's own, else the widest narrower ISA's; null when none.
const KernelFamily* family_for(Isa isa, DType dtype, Precision p) {
  DType compute;
  WeightFormat weights;
  if (!family_key(dtype, p, &compute, &weights)) return nullptr;
  for (int i = static_cast<int>(isa); i >= 0; --i)
    if (const KernelFamily* f = find_family(static_cast<Isa>(i), compute, weights)) return f;
  return nullptr;
}

std::string offers(Isa isa, DType dtype) {
  std::string s;
  for (PrecisionSupport p : precisions(isa, dtype))
    s += std::string(s.empty() ? "" : ", ") + precision_name(p.precision);
  return s;
}

class CpuEngine final : public Engine {
 public:
  CpuEngine(const KernelFamily& family, const EngineKey& key) : family_(family), key_(key) {}

  std::string name() const override {
    return std::string("cpu ") + isa_name(family_.isa) + ", " + dtype_name(family_.compute) + " math, " +
           weight_format_name(family_.weights) + " weights";
  }
  const EngineKey& key() const override { return key_; }
  bool trains() const override { return family_.cells[static_cast<int>(key_.cell)].run_backward != nullptr; }

  std::unique_ptr<PackedWeights> pack(const ModelShape& shape, const RawLayer* layers, bool training) const override {
    if (training && !trains())
      throw std::invalid_argument(std::string("precision: '") + precision_name(key_.precision) +
                                  "' runs inference only (train=True needs another precision)");
    return pack_model(family_, key_.cell, shape, layers, training);
  }

  CallSizes sizes(const ModelShape& s, int T, int B, bool train) const override {
    const Geometry g{&family_, key_.cell, s};
    const int n = default_num_threads() < kMaxTeam ? default_num_threads() : kMaxTeam;
    CallSizes c;
    c.outputs = output_bytes(s, T, B, dtype_size(key_.dtype), train);
    c.workspace = forward_workspace_bytes(g, T, B, n, train);
    if (train) {
      c.saved = saved_state_bytes(g, T, B);
      const std::size_t back = backward_workspace_bytes(g, T, B, n);
      if (back > c.workspace) c.workspace = back;
    }
    return c;
  }

  void forward(const ForwardArgs& args) const override { run_forward(own(args.weights), args); }

  std::unique_ptr<SavedState> forward_train(const ForwardArgs& args, const void* const* masks, void* saved,
                                            std::size_t saved_bytes) const override {
    return run_forward_train(own(args.weights), args, masks, saved, saved_bytes);
  }

  std::unique_ptr<SavedState> saved_view(const PackedWeights& weights, int T, int B, const std::int64_t* lengths,
                                         void* saved, std::size_t saved_bytes) const override {
    const PackedModel& m = own(&weights);
    if (T < 1 || B < 1) throw std::invalid_argument("T, B: expected >= 1");
    if (!saved) throw std::invalid_argument("saved: null");
    check_lengths(lengths, T, B);
    RowOrder order;
    order.build(T, B, lengths);
    auto state = std::make_unique<TrainState>();
    layout_train_state(*state, m, order, saved, saved_bytes, /*for_writing=*/false);
    return state;
  }

  void backward(const BackwardArgs& args) const override {
    if (!args.state || args.state->owner != &family_)
      throw std::invalid_argument("state: not saved by a training forward of this engine");
    run_backward(own(args.weights), static_cast<const TrainState&>(*args.state), args);
  }

 private:
  const PackedModel& own(const PackedWeights* w) const {
    if (!w || w->owner != &family_) throw std::invalid_argument("weights: not packed by this engine (" + name() + ")");
    const auto& m = static_cast<const PackedModel&>(*w);
    if (m.cell != key_.cell) throw std::invalid_argument("weights: packed for another cell");
    return m;
  }

  const KernelFamily& family_;
  EngineKey key_;
};

}  // namespace

std::shared_ptr<const Engine> make_engine(Isa isa, const EngineKey& key) {
  if (!isa_supported(isa)) throw std::invalid_argument(std::string("isa: ") + isa_name(isa) + " is not supported here");
  const KernelFamily* f = family_for(isa, key.dtype, key.precision);
  if (!f)
    throw std::invalid_argument(std::string("precision: '") + precision_name(key.precision) +
                                "' is not available for " + dtype_name(key.dtype) + " on this CPU (" + isa_name(isa) +
                                "); it offers: " + offers(isa, key.dtype));
  return std::make_shared<CpuEngine>(*f, key);
}

std::vector<PrecisionSupport> precisions(Isa isa, DType dtype) {
  std::vector<PrecisionSupport> out;
  for (int i = 0; i < kNumPrecisions; ++i) {
    const auto p = static_cast<Precision>(i);
    if (const KernelFamily* f = family_for(isa, dtype, p))
      out.push_back({p, f->isa == isa && (p == Precision::kDefault || f->feature != CpuFeature::kNone)});
  }
  return out;
}

std::vector<std::string> describe_families() {
  std::vector<std::string> out;
  for (const KernelFamily* f : all_families())
    out.push_back(std::string(isa_name(f->isa)) + " " + dtype_name(f->compute) + " math, " +
                  weight_format_name(f->weights) + " weights" + (runnable(*f) ? "" : " (not runnable here)"));
  return out;
}

}  // namespace fastlstm::cpu
