// maskiou_targets CUDA kernels, per image, the bodies in maskiou_targets_math.h:
//   1. summed-area tables of the whole image, one thread per (ground truth, row), then
//   2. one thread per (ground truth, column);
//   3. one thread per mask-target element (roi_align's samples of the matched mask, read as bytes);
//   4. one thread per RoI: the IoU from its 28x28 target and logits, the area ratio O(1).
// Matched indices are asserted in-kernel (a host check would need a sync).

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "common/checks.h"
#include "common/cuda/launch.cuh"
#include "ops/maskiou_targets/maskiou_targets_host.h"
#include "ops/maskiou_targets/maskiou_targets_math.h"

namespace msrcnn::maskiou_targets {
namespace {

template <typename T, typename logit_t>
__global__ void sat_rows_kernel(int64_t n, ImageArgs<T, logit_t> a) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    sat_row_element(i, a);
  }
}

template <typename T, typename logit_t>
__global__ void sat_columns_kernel(int64_t n, ImageArgs<T, logit_t> a) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    sat_column_element(i, a);
  }
}

template <typename T, typename logit_t>
__global__ void mask_targets_kernel(int64_t n, ImageArgs<T, logit_t> a) {
  const int64_t cells = a.pool.pooled_height * a.pool.pooled_width;
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    const int64_t matched = a.matched[i / cells];
    CUDA_KERNEL_ASSERT(matched >= 0 && matched < a.gts && "maskiou_targets: matched_idxs out of range");
    a.mask_targets[i] = stored_target(mask_target_element(i, a), a.binary_mask_targets);
  }
}

template <typename T, typename logit_t>
__global__ void maskiou_kernel(int64_t n, ImageArgs<T, logit_t> a, T* maskiou) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    maskiou[i] = maskiou_element(i, a);
  }
}

template <typename T, typename logit_t>
void image_cuda(const Image& image, const at::Tensor& logits, bool aligned, bool binary, at::Tensor& mask_targets,
                at::Tensor& maskiou) {
  const int64_t rois = image.proposals.size(0);
  if (rois == 0) {
    return;
  }
  const int64_t gts = image.masks.size(0);
  const int64_t height = image.masks.size(1);
  const int64_t width = image.masks.size(2);
  at::Tensor sat = at::empty({gts, height + 1, width + 1}, image.masks.options().dtype(at::kInt));
  const auto a =
      make_image_args<T, logit_t>(image, logits, mask_targets, sat.mutable_data_ptr<int32_t>(), aligned, binary);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (gts * height > 0) {
    sat_rows_kernel<<<grid_size(gts * height), kThreadsPerBlock, 0, stream>>>(gts * height, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  sat_columns_kernel<<<grid_size(gts * (width + 1)), kThreadsPerBlock, 0, stream>>>(gts * (width + 1), a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t cells = rois * a.pool.pooled_height * a.pool.pooled_width;
  mask_targets_kernel<<<grid_size(cells), kThreadsPerBlock, 0, stream>>>(cells, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  maskiou_kernel<<<grid_size(rois), kThreadsPerBlock, 0, stream>>>(
      rois, a, maskiou.mutable_data_ptr<T>() + image.first_roi);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> maskiou_targets_cuda(
    at::TensorList gt_masks,
    at::TensorList proposals,
    at::TensorList matched_idxs,
    const at::Tensor& mask_logits,
    bool aligned,
    bool binary_mask_targets) {
  const char* op = "msrcnn::maskiou_targets";
  const std::vector<Image> images = check_args(gt_masks, proposals, matched_idxs, mask_logits, op);
  check_device_type(mask_logits, c10::DeviceType::CUDA, op, "mask_logits");
  const c10::cuda::CUDAGuard guard(mask_logits.device());
  const at::Tensor logits = mask_logits.contiguous();
  const auto options = proposals[0].options();
  at::Tensor mask_targets = at::empty(logits.sizes(), options);
  at::Tensor maskiou = at::empty({logits.size(0)}, options);
  for (const Image& image : images) {
    AT_DISPATCH_FLOATING_TYPES(mask_targets.scalar_type(), "maskiou_targets_cuda", [&] {
      using T = scalar_t;
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "maskiou_targets_cuda", [&] {
        image_cuda<T, scalar_t>(image, logits, aligned, binary_mask_targets, mask_targets, maskiou);
      });
    });
  }
  return {mask_targets, maskiou};
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("maskiou_targets", &maskiou_targets_cuda);
}

}  // namespace msrcnn::maskiou_targets
