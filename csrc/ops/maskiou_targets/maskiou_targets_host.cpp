#include "ops/maskiou_targets/maskiou_targets_host.h"

#include <c10/util/Exception.h>

#include <limits>

#include "common/checks.h"

namespace msrcnn::maskiou_targets {

std::vector<Image> check_args(
    at::TensorList gt_masks,
    at::TensorList proposals,
    at::TensorList matched_idxs,
    const at::Tensor& mask_logits,
    const char* op) {
  TORCH_CHECK_VALUE(!gt_masks.empty(), op, ": expected at least one image, got none");
  TORCH_CHECK_VALUE(
      gt_masks.size() == proposals.size() && gt_masks.size() == matched_idxs.size(), op,
      ": expected one gt_masks, proposals and matched_idxs per image, got ", gt_masks.size(), ", ",
      proposals.size(), " and ", matched_idxs.size());
  check_floating(mask_logits, op, "mask_logits");
  TORCH_CHECK_VALUE(
      mask_logits.dim() == 3 && mask_logits.size(1) > 0 && mask_logits.size(2) > 0, op,
      ": expected mask_logits of shape [N, M, M] (the target class's logits), got shape ", mask_logits.sizes());
  const at::ScalarType box_type = proposals[0].scalar_type();
  std::vector<Image> images;
  int64_t first_roi = 0;
  for (size_t i = 0; i < gt_masks.size(); ++i) {
    const at::Tensor& masks = gt_masks[i];
    const at::Tensor& boxes = proposals[i];
    const at::Tensor& matched = matched_idxs[i];
    TORCH_CHECK_VALUE(
        masks.dim() == 3, op, ": expected gt_masks[", i, "] of shape [G, H, W], got shape ", masks.sizes());
    TORCH_CHECK_TYPE(
        masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte, op, ": expected gt_masks[", i,
        "] of dtype bool or uint8, got ", masks.scalar_type());
    TORCH_CHECK_VALUE(
        (masks.size(1) + 1) * (masks.size(2) + 1) <= std::numeric_limits<int32_t>::max(), op,
        ": expected images of fewer than 2^31 pixels, got gt_masks[", i, "] of shape ", masks.sizes());
    TORCH_CHECK_VALUE(
        boxes.dim() == 2 && boxes.size(1) == 4, op, ": expected proposals[", i,
        "] of shape [N, 4] (x1, y1, x2, y2), got shape ", boxes.sizes());
    TORCH_CHECK_TYPE(
        boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble, op, ": expected proposals[", i,
        "] of dtype float32 or float64, got ", boxes.scalar_type());
    TORCH_CHECK_TYPE(
        boxes.scalar_type() == box_type, op, ": expected proposals of one dtype, got ", box_type, " and ",
        boxes.scalar_type(), " (image ", i, ")");
    TORCH_CHECK_TYPE(
        matched.scalar_type() == at::kLong, op, ": expected matched_idxs[", i, "] of dtype int64, got ",
        matched.scalar_type());
    TORCH_CHECK_VALUE(
        matched.dim() == 1 && matched.size(0) == boxes.size(0), op, ": expected matched_idxs[", i, "] of shape [",
        boxes.size(0), "] (one per proposal), got shape ", matched.sizes());
    TORCH_CHECK_VALUE(
        boxes.size(0) == 0 || masks.size(0) > 0, op, ": expected ground-truth masks for the ", boxes.size(0),
        " proposals of image ", i, ", got gt_masks[", i, "] of shape ", masks.sizes());
    check_same_device(mask_logits, "mask_logits", masks, "gt_masks", op);
    check_same_device(mask_logits, "mask_logits", boxes, "proposals", op);
    check_same_device(mask_logits, "mask_logits", matched, "matched_idxs", op);
    images.push_back(Image{masks.contiguous(), boxes.contiguous(), matched.contiguous(), first_roi});
    first_roi += boxes.size(0);
  }
  TORCH_CHECK_VALUE(
      mask_logits.size(0) == first_roi, op, ": expected mask_logits for the ", first_roi,
      " proposals of all images, got shape ", mask_logits.sizes());
  return images;
}

}  // namespace msrcnn::maskiou_targets
