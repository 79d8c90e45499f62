#include "ops/roi_align/roi_align_host.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <cmath>

#include "common/checks.h"

namespace msrcnn::roi_align {
namespace {

void check_rois(const at::Tensor& rois, const char* op) {
  check_floating(rois, op, "rois");
  TORCH_CHECK_VALUE(
      rois.dim() == 2 && rois.size(1) == 5, op,
      ": expected rois of shape [K, 5] (batch index, x1, y1, x2, y2), got shape ", rois.sizes());
}

void check_params(const RoIAlignParams& params, size_t num_levels, const char* op) {
  TORCH_CHECK_VALUE(
      params.spatial_scales.size() == num_levels, op, ": expected one spatial scale per feature map (",
      num_levels, "), got ", params.spatial_scales.size());
  for (size_t i = 0; i < params.spatial_scales.size(); ++i) {
    const double scale = params.spatial_scales[i];
    if (params.multi_level) {
      TORCH_CHECK_VALUE(
          std::isfinite(scale) && scale > 0, op, ": expected positive, finite spatial_scales, got spatial_scales[",
          i, "] = ", scale);
    } else {
      TORCH_CHECK_VALUE(
          std::isfinite(scale) && scale > 0, op, ": expected a positive, finite spatial_scale, got ", scale);
    }
  }
  const PoolParams& pool = params.pool;
  TORCH_CHECK_VALUE(
      pool.pooled_height > 0 && pool.pooled_width > 0, op, ": expected a positive output_size, got (",
      pool.pooled_height, ", ", pool.pooled_width, ")");
  int64_t bins = 0;
  TORCH_CHECK_VALUE(
      !c10::mul_overflows(pool.pooled_height, pool.pooled_width, &bins), op, ": output_size (", pool.pooled_height,
      ", ", pool.pooled_width, ") is too large: its number of bins overflows int64");
  // A fixed grid is S * S samples per bin, every one visited when the bin is on the map.
  TORCH_CHECK_VALUE(
      pool.sampling_ratio <= kMaxSamplingRatio, op, ": expected sampling_ratio in [1, ", kMaxSamplingRatio,
      "] (samples per bin side), or <= 0 for an adaptive grid, got ", pool.sampling_ratio);
  if (num_levels > 1) {
    TORCH_CHECK_VALUE(
        params.canonical_scale > 0, op, ": expected a positive canonical_scale, got ", params.canonical_scale);
  }
}

// The [K, C, pooled_height, pooled_width] output must be a tensor PyTorch can describe.
void check_output_size(int64_t num_rois, int64_t channels, const PoolParams& pool, int64_t element_size,
                       const char* op) {
  int64_t bytes = 0;
  const bool overflows = c10::mul_overflows(pool.pooled_height, pool.pooled_width, &bytes) ||
      c10::mul_overflows(bytes, num_rois, &bytes) || c10::mul_overflows(bytes, channels, &bytes) ||
      c10::mul_overflows(bytes, element_size, &bytes);
  TORCH_CHECK_VALUE(
      !overflows, op, ": output_size (", pool.pooled_height, ", ", pool.pooled_width, ") is too large: an output of ",
      num_rois, " RoIs x ", channels, " channels x output_size overflows int64 bytes");
}

}  // namespace

void check_forward_args(at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params, const char* op) {
  TORCH_CHECK_VALUE(
      !features.empty() && features.size() <= static_cast<size_t>(kMaxLevels), op, ": expected 1 to ",
      kMaxLevels, " feature maps, got ", features.size());
  const at::Tensor& first = features[0];
  for (size_t i = 0; i < features.size(); ++i) {
    const at::Tensor& f = features[i];
    if (params.multi_level) {
      TORCH_CHECK_VALUE(
          f.dim() == 4, op, ": expected feature map ", i, " of shape [N, C, H, W], got shape ", f.sizes());
    } else {
      TORCH_CHECK_VALUE(f.dim() == 4, op, ": expected input of shape [N, C, H, W], got shape ", f.sizes());
    }
    check_floating(f, op, "input");
    TORCH_CHECK_TYPE(
        f.scalar_type() == first.scalar_type(), op, ": expected all feature maps of one dtype, got ",
        first.scalar_type(), " and ", f.scalar_type());
    check_same_device(first, "feature map 0", f, "feature map i", op);
    TORCH_CHECK_VALUE(
        f.size(0) == first.size(0) && f.size(1) == first.size(1), op,
        ": expected all feature maps to share N and C, got ", first.sizes(), " and ", f.sizes(), " (map ", i, ")");
  }
  check_rois(rois, op);
  check_same_device(first, "input", rois, "rois", op);
  check_params(params, features.size(), op);
  check_output_size(rois.size(0), first.size(1), params.pool, first.element_size(), op);
}

void check_backward_args(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const RoIAlignParams& params,
    int64_t batch_size,
    int64_t channels,
    at::IntArrayRef heights,
    at::IntArrayRef widths,
    const char* op) {
  check_rois(rois, op);
  check_floating(grad, op, "grad");
  check_same_device(grad, "grad", rois, "rois", op);
  TORCH_CHECK_VALUE(
      heights.size() == widths.size() && !heights.empty() && heights.size() <= static_cast<size_t>(kMaxLevels),
      op, ": expected 1 to ", kMaxLevels, " (height, width) pairs, got ", heights.size(), " heights and ",
      widths.size(), " widths");
  check_params(params, heights.size(), op);
  TORCH_CHECK_VALUE(
      grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
          grad.size(2) == params.pool.pooled_height && grad.size(3) == params.pool.pooled_width,
      op, ": expected grad of shape [", rois.size(0), ", ", channels, ", ", params.pool.pooled_height, ", ",
      params.pool.pooled_width, "], got ", grad.sizes());
  TORCH_CHECK_VALUE(batch_size >= 0 && channels >= 0, op, ": expected non-negative batch_size and channels");
  for (size_t i = 0; i < heights.size(); ++i) {
    TORCH_CHECK_VALUE(heights[i] >= 0 && widths[i] >= 0, op, ": expected non-negative map sizes");
  }
}

at::ScalarType accumulate_type(at::ScalarType feature_type) {
  return feature_type == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace msrcnn::roi_align
