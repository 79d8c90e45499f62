#include "ops/paste_masks/paste_masks_host.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <cmath>

#include "common/checks.h"

namespace msrcnn::paste_masks {

void check_args(const at::Tensor& masks, const at::Tensor& boxes, const PasteParams& params, const char* op) {
  check_floating(masks, op, "masks");
  TORCH_CHECK_VALUE(
      masks.dim() == 4 && masks.size(1) == 1 && masks.size(2) == masks.size(3) && masks.size(2) > 0, op,
      ": expected masks of shape [N, 1, M, M], got shape ", masks.sizes());
  TORCH_CHECK_TYPE(
      boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble, op,
      ": expected boxes of dtype float32 or float64, got ", boxes.scalar_type());
  TORCH_CHECK_VALUE(
      boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0), op, ": expected boxes of shape [",
      masks.size(0), ", 4] (x1, y1, x2, y2), one per mask, got shape ", boxes.sizes());
  check_same_device(masks, "masks", boxes, "boxes", op);
  TORCH_CHECK_VALUE(
      params.height >= 0 && params.width >= 0, op, ": expected a non-negative image_size (height, width), got (",
      params.height, ", ", params.width, ")");
  int64_t pixels = 0;
  int64_t elements = 0;
  TORCH_CHECK_VALUE(
      !c10::mul_overflows(params.height, params.width, &pixels) &&
          !c10::mul_overflows(pixels, masks.size(0), &elements),
      op, ": expected an image_size whose output [N, height, width] has fewer than 2^63 elements, got image_size (",
      params.height, ", ", params.width, ") for ", masks.size(0), " masks");
  // Beyond 2^40 the boxes are clamped anyway; the bound keeps M + 2 padding and the resize
  // arithmetic within int64.
  TORCH_CHECK_VALUE(
      params.padding >= 0 && static_cast<double>(params.padding) <= kMaxCoordinate, op,
      ": expected a padding in [0, 2^40], got ", params.padding);
  TORCH_CHECK_VALUE(!std::isnan(params.threshold), op, ": expected a threshold that is a number, got nan");
}

}  // namespace msrcnn::paste_masks
