#pragma once

// maskiou_targets' CPU kernels, compiled once per CPU capability (DEFAULT, AVX2, AVX512).

#include <ATen/core/Tensor.h>

#include "ops/maskiou_targets/maskiou_targets_host.h"

namespace msrcnn::maskiou_targets {

// One image: writes rows [image.first_roi, image.first_roi + N) of mask_targets [sum N, M, M]
// and maskiou [sum N] (both contiguous, of the proposals' dtype). Matched indices validated.
#define MSRCNN_DECLARE_MASKIOU_TARGETS_CPU_KERNELS(CAPABILITY)                                            \
  namespace CAPABILITY {                                                                                \
  void image_kernel(const Image& image, const at::Tensor& mask_logits, bool aligned, bool binary_mask_targets, \
                    at::Tensor& mask_targets, at::Tensor& maskiou);                                      \
  }

MSRCNN_DECLARE_MASKIOU_TARGETS_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_MASKIOU_TARGETS_CPU_KERNELS(AVX2)
MSRCNN_DECLARE_MASKIOU_TARGETS_CPU_KERNELS(AVX512)

#undef MSRCNN_DECLARE_MASKIOU_TARGETS_CPU_KERNELS

}  // namespace msrcnn::maskiou_targets
