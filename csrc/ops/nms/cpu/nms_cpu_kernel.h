#pragma once

// NMS and Soft-NMS CPU kernels, compiled once per CPU capability (nms_cpu_kernel.cpp into
// namespaces DEFAULT, AVX2 and AVX512). Hard NMS runs its AVX2 build on AVX-512 CPUs
// (MSRCNN_CPU_DISPATCH_UP_TO_AVX2: the AVX512 build measured 2.1-2.4x slower on Intel and AMD),
// Soft-NMS its AVX512 build on AMD CPUs only (MSRCNN_CPU_DISPATCH_AVX512_ON_AMD; see setup.py).
// Each category is processed on its own (in parallel over categories) with a vectorised pass
// over its boxes.

#include <ATen/core/Tensor.h>

#include <vector>

#include "ops/nms/nms_host.h"

namespace msrcnn::nms {

// The boxes a category keeps, in selection order, with their final scores.
struct Kept {
  std::vector<int64_t> indices;
  std::vector<double> scores;
};

// boxes [N, 4] and scores [N]: contiguous, both of accumulate_type. One Kept per group.
#define MSRCNN_DECLARE_NMS_CPU_KERNELS(CAPABILITY)                                                       \
  namespace CAPABILITY {                                                                               \
  std::vector<Kept> soft_nms_kernel(                                                                   \
      const at::Tensor& boxes, const at::Tensor& scores, const Groups& groups, const SoftParams& params); \
  std::vector<Kept> nms_kernel(                                                                        \
      const at::Tensor& boxes, const at::Tensor& scores, const Groups& groups, double iou_threshold,     \
      double offset);                                                                                  \
  }

MSRCNN_DECLARE_NMS_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_NMS_CPU_KERNELS(AVX2)
MSRCNN_DECLARE_NMS_CPU_KERNELS(AVX512)

#undef MSRCNN_DECLARE_NMS_CPU_KERNELS

}  // namespace msrcnn::nms
