// Runtime flags become template parameters at the launch sites, and only there (flash-attention's
// BOOL_SWITCH), so kernels carry no per-element branches on them. Host code; no CUDA types.
#pragma once

#include <type_traits>
#include <utility>

namespace fastlstm::cuda::detail {

template <class F>
void bool_switch(bool flag, F&& f) {
  if (flag) {
    std::forward<F>(f)(std::true_type{});
  } else {
    std::forward<F>(f)(std::false_type{});
  }
}

}  // namespace fastlstm::cuda::detail
