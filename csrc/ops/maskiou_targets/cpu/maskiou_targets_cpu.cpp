// maskiou_targets CPU entry points: checks, matched indices, outputs; the kernels are in
// maskiou_targets_cpu_kernel.cpp (per CPU capability). Also the element-by-element test op.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "ops/maskiou_targets/cpu/maskiou_targets_cpu_kernel.h"
#include "ops/maskiou_targets/maskiou_targets_host.h"

namespace msrcnn::maskiou_targets {
namespace {

// Vectorised: the fast kernels. ByElement: the CUDA element bodies, one after another.
enum class Engine { Vectorised, ByElement };

// The kernels index gt_masks by matched_idxs: reject any outside [0, G).
void check_matched_values(const Image& image, size_t index, const char* op) {
  const int64_t* matched = image.matched.const_data_ptr<int64_t>();
  const int64_t gts = image.masks.size(0);
  for (int64_t n = 0; n < image.matched.size(0); ++n) {
    TORCH_CHECK_VALUE(
        matched[n] >= 0 && matched[n] < gts, op, ": matched_idxs[", index, "][", n, "] = ", matched[n],
        " is not a ground truth of the image (expected 0 <= index < ", gts, ")");
  }
}

// The GPU's pipeline, one element at a time: whole-image tables, mask targets, maskiou.
template <typename T, typename logit_t>
void image_by_element(const Image& image, const at::Tensor& logits, bool aligned, bool binary, at::Tensor& targets,
                      at::Tensor& maskiou) {
  const int64_t gts = image.masks.size(0);
  at::Tensor sat =
      at::empty({gts, image.masks.size(1) + 1, image.masks.size(2) + 1}, image.masks.options().dtype(at::kInt));
  auto a = make_image_args<T, logit_t>(image, logits, targets, sat.mutable_data_ptr<int32_t>(), aligned, binary);
  for (int64_t i = 0; i < gts * a.height; ++i) {
    sat_row_element(i, a);
  }
  for (int64_t i = 0; i < gts * (a.width + 1); ++i) {
    sat_column_element(i, a);
  }
  for (int64_t i = 0; i < a.rois * a.pool.pooled_height * a.pool.pooled_width; ++i) {
    a.mask_targets[i] = stored_target(mask_target_element(i, a), binary);
  }
  T* iou = maskiou.mutable_data_ptr<T>() + image.first_roi;
  for (int64_t n = 0; n < a.rois; ++n) {
    iou[n] = maskiou_element(n, a);
  }
}

template <Engine engine>
std::tuple<at::Tensor, at::Tensor> maskiou_targets_cpu(
    at::TensorList gt_masks,
    at::TensorList proposals,
    at::TensorList matched_idxs,
    const at::Tensor& mask_logits,
    bool aligned,
    bool binary_mask_targets) {
  const char* op = "msrcnn::maskiou_targets";
  const std::vector<Image> images = check_args(gt_masks, proposals, matched_idxs, mask_logits, op);
  check_device_type(mask_logits, c10::DeviceType::CPU, op, "mask_logits");
  for (size_t i = 0; i < images.size(); ++i) {
    check_matched_values(images[i], i, op);
  }
  const at::Tensor logits = mask_logits.contiguous();
  const auto options = proposals[0].options();
  at::Tensor mask_targets = at::empty(logits.sizes(), options);
  at::Tensor maskiou = at::empty({logits.size(0)}, options);
  for (const Image& image : images) {
    if (engine == Engine::Vectorised) {
      MSRCNN_CPU_DISPATCH(
          ::msrcnn::maskiou_targets, image_kernel, image, logits, aligned, binary_mask_targets, mask_targets, maskiou);
      continue;
    }
    AT_DISPATCH_FLOATING_TYPES(mask_targets.scalar_type(), "maskiou_targets_by_element", [&] {
      using T = scalar_t;
      AT_DISPATCH_FLOATING_TYPES_AND2(
          at::kHalf, at::kBFloat16, logits.scalar_type(), "maskiou_targets_by_element",
          [&] { image_by_element<T, scalar_t>(image, logits, aligned, binary_mask_targets, mask_targets, maskiou); });
    });
  }
  return {mask_targets, maskiou};
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("maskiou_targets", &maskiou_targets_cpu<Engine::Vectorised>);
}

TORCH_LIBRARY_IMPL(msrcnn_testing, CPU, m) {
  m.impl("maskiou_targets_by_element", &maskiou_targets_cpu<Engine::ByElement>);
}

}  // namespace msrcnn::maskiou_targets
