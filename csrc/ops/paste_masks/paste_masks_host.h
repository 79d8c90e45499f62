#pragma once

// Host-side preparation shared by paste_masks' CPU and CUDA entry points: argument checks
// and the element-body arguments.

#include <ATen/core/Tensor.h>

#include "ops/paste_masks/paste_masks_math.h"

namespace msrcnn::paste_masks {

struct PasteParams {
  int64_t height;
  int64_t width;
  double threshold;
  int64_t padding;
};

// masks [N, 1, M, M] floating, boxes [N, 4] float32/float64 on the masks' device, a
// non-negative image size and padding.
void check_args(const at::Tensor& masks, const at::Tensor& boxes, const PasteParams& params, const char* op);

// masks: [N, 1, M, M] contiguous; boxes: contiguous.
template <typename scalar_t, typename T, typename box_t>
Args<scalar_t, T, box_t> make_args(const at::Tensor& masks, const at::Tensor& boxes, const PasteParams& params) {
  Args<scalar_t, T, box_t> a{};
  a.masks = masks.const_data_ptr<scalar_t>();
  a.boxes = boxes.const_data_ptr<box_t>();
  a.mask_size = masks.size(3);
  a.padding = params.padding;
  a.height = params.height;
  a.width = params.width;
  a.threshold = static_cast<T>(static_cast<scalar_t>(params.threshold));
  return a;
}

}  // namespace msrcnn::paste_masks
