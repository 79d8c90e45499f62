#pragma once

// Argument checks shared by the ops' CPU and CUDA entry points. Every message names the op,
// the argument, what was expected and what was given.

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string>

namespace msrcnn {

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name) {
  TORCH_CHECK_VALUE(
      t.dim() == dim, op, ": expected ", name, " to have ", dim, " dimensions, got shape ", t.sizes());
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(
      at::isFloatingType(t.scalar_type()), op, ": expected ", name,
      " to be a floating-point tensor, got ", t.scalar_type());
}

inline void check_same_device(
    const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name, const char* op) {
  TORCH_CHECK_VALUE(
      a.device() == b.device(), op, ": expected ", a_name, " and ", b_name,
      " on the same device, got ", a.device(), " and ", b.device());
}

inline void check_device_type(const at::Tensor& t, c10::DeviceType type, const char* op, const char* name) {
  TORCH_CHECK_VALUE(
      t.device().type() == type, op, ": expected ", name, " on ", c10::DeviceTypeName(type),
      ", got ", t.device());
}

// True when `t` is a 4-d tensor laid out channels-last (NHWC) and not also plain contiguous
// (C == 1 or H == W == 1 is both; those take the NCHW path).
inline bool is_channels_last_4d(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace msrcnn
