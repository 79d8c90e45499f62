#pragma once

// mask_pool_concat's CPU kernels, compiled once per CPU capability up to AVX2 (DEFAULT, AVX2:
// the AVX512 build measured slower, see setup.py).
// Parallel over RoIs; each RoI's outputs are written by one thread (deterministic, no
// atomics), every element of each output exactly once (no separate zero fill).

#include <ATen/core/Tensor.h>

#include "ops/mask_pool_concat/mask_pool_concat_host.h"

namespace msrcnn::mask_pool_concat {

// output: [N, output_channels, S_h, S_w] contiguous. grad_logits: [N, K, M_h, M_w]
// contiguous. grad_features: [N, C, S_h, S_w] contiguous (mode Multiply). Inputs contiguous,
// labels validated.
#define MSRCNN_DECLARE_MASK_POOL_CONCAT_CPU_KERNELS(CAPABILITY)                                      \
  namespace CAPABILITY {                                                                           \
  void forward_kernel(const Geometry& geometry, const Inputs& inputs, at::Tensor& output);           \
  void logits_backward_kernel(const Geometry& geometry, const Inputs& inputs, at::Tensor& grad_logits); \
  void multiply_features_backward_kernel(const Geometry& geometry, const Inputs& inputs, at::Tensor& grad_features); \
  }

MSRCNN_DECLARE_MASK_POOL_CONCAT_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_MASK_POOL_CONCAT_CPU_KERNELS(AVX2)

#undef MSRCNN_DECLARE_MASK_POOL_CONCAT_CPU_KERNELS

}  // namespace msrcnn::mask_pool_concat
