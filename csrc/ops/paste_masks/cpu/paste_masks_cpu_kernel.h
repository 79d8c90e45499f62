#pragma once

// paste_masks' CPU kernel, compiled once per CPU capability (DEFAULT, AVX2, AVX512).

#include <ATen/core/Tensor.h>

#include <vector>

#include "ops/paste_masks/paste_masks_host.h"

namespace msrcnn::paste_masks {

// masks: [N, 1, M, M] contiguous; placements: each mask's PasteBox (computed by the caller, in
// a file built without FMA so that the integer boxes round as torchvision's tensor ops);
// output: [N, H, W] bool, contiguous, every element written. Parallel over masks.
#define MSRCNN_DECLARE_PASTE_MASKS_CPU_KERNELS(CAPABILITY)                                                 \
  namespace CAPABILITY {                                                                                 \
  void paste_kernel(const at::Tensor& masks, const std::vector<PasteBox>& placements, const PasteParams& params, \
                    at::Tensor& output);                                                                 \
  }

MSRCNN_DECLARE_PASTE_MASKS_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_PASTE_MASKS_CPU_KERNELS(AVX2)
MSRCNN_DECLARE_PASTE_MASKS_CPU_KERNELS(AVX512)

#undef MSRCNN_DECLARE_PASTE_MASKS_CPU_KERNELS

}  // namespace msrcnn::paste_masks
