#pragma once

// Host-side preparation shared by maskiou_targets' CPU and CUDA entry points: argument
// checks, the per-image element-body arguments.

#include <ATen/core/Tensor.h>

#include <vector>

#include "ops/maskiou_targets/maskiou_targets_math.h"

namespace msrcnn::maskiou_targets {

// One image's inputs, made contiguous, and its RoIs' place in the batch.
struct Image {
  at::Tensor masks;      // [G, H, W] bool or uint8
  at::Tensor proposals;  // [N, 4]
  at::Tensor matched;    // [N] int64
  int64_t first_roi;     // row of its first RoI in mask_logits and the outputs
};

// Raises a clear error for anything the kernels cannot take; returns the images (contiguous)
// with their RoI offsets. Matched indices are range-checked by the backends (the CPU reads
// them, CUDA asserts in-kernel). mask_logits: [sum N, M, M].
std::vector<Image> check_args(
    at::TensorList gt_masks,
    at::TensorList proposals,
    at::TensorList matched_idxs,
    const at::Tensor& mask_logits,
    const char* op);

inline PoolParams pool_params(const at::Tensor& mask_logits, bool aligned) {
  // project_masks_on_boxes: roi_align(..., (M, M), 1.0), sampling_ratio -1 (adaptive).
  return PoolParams{mask_logits.size(1), mask_logits.size(2), -1, aligned};
}

// The element-body arguments of one image; `logits` and `mask_targets` are the whole batch's
// (offset here to the image's first RoI); sat may be null (CPU kernels keep their own tables).
template <typename T, typename logit_t>
ImageArgs<T, logit_t> make_image_args(
    const Image& image,
    const at::Tensor& logits,
    at::Tensor& mask_targets,
    int32_t* sat,
    bool aligned,
    bool binary_mask_targets) {
  ImageArgs<T, logit_t> a{};
  a.masks = static_cast<const uint8_t*>(image.masks.const_data_ptr());
  a.gts = image.masks.size(0);
  a.height = image.masks.size(1);
  a.width = image.masks.size(2);
  a.proposals = image.proposals.const_data_ptr<T>();
  a.matched = image.matched.const_data_ptr<int64_t>();
  a.rois = image.proposals.size(0);
  a.pool = pool_params(logits, aligned);
  const int64_t cells = a.pool.pooled_height * a.pool.pooled_width;
  a.logits = logits.const_data_ptr<logit_t>() + image.first_roi * cells;
  a.sat = sat;
  a.mask_targets = mask_targets.mutable_data_ptr<T>() + image.first_roi * cells;
  a.binary_mask_targets = binary_mask_targets;
  return a;
}

}  // namespace msrcnn::maskiou_targets
