#include "ops/mask_pool_concat/mask_pool_concat_host.h"

#include <c10/util/Exception.h>

#include "common/checks.h"

namespace msrcnn::mask_pool_concat {
namespace {

void check_labels(const std::optional<at::Tensor>& labels, const Geometry& g, const at::Tensor& like, const char* op) {
  if (!uses_labels(g)) {
    return;
  }
  TORCH_CHECK_VALUE(
      labels.has_value() && labels->defined(), op, ": expected labels (Tensor[N] int64) to select one of the ",
      g.classes, " mask classes, got None");
  TORCH_CHECK_TYPE(
      labels->scalar_type() == at::kLong, op, ": expected labels of dtype int64, got ", labels->scalar_type());
  TORCH_CHECK_VALUE(
      labels->dim() == 1 && labels->size(0) == g.rois, op, ": expected labels of shape [", g.rois, "], got shape ",
      labels->sizes());
  check_same_device(like, "mask_logits", *labels, "labels", op);
}

Geometry geometry_of(const at::Tensor& mask_logits, int64_t rois, int64_t channels, int64_t height, int64_t width,
                     Mode mode, const char* op) {
  check_floating(mask_logits, op, "mask_logits");
  TORCH_CHECK_VALUE(
      mask_logits.dim() == 4, op, ": expected mask_logits of shape [N, K, M, M], got shape ", mask_logits.sizes());
  TORCH_CHECK_VALUE(
      mask_logits.size(0) == rois, op, ": expected mask_logits for ", rois, " RoIs (roi_features has ", rois,
      "), got shape ", mask_logits.sizes());
  TORCH_CHECK_VALUE(
      mask_logits.size(1) > 0, op, ": expected mask_logits with at least one class, got shape ", mask_logits.sizes());
  TORCH_CHECK_VALUE(
      height > 0 && width > 0 && mask_logits.size(2) % height == 0 && mask_logits.size(3) % width == 0 &&
          mask_logits.size(2) >= height && mask_logits.size(3) >= width,
      op, ": expected the mask size to be a multiple of the RoI feature size (", height, "x", width,
      "), got mask_logits of shape ", mask_logits.sizes());
  return Geometry{rois,    channels, mask_logits.size(1), height, width, mask_logits.size(2), mask_logits.size(3),
                  mode};
}

}  // namespace

Mode parse_mode(c10::string_view mode, const char* op) {
  if (mode == "concat") {
    return Mode::Concat;
  }
  if (mode == "multiply") {
    return Mode::Multiply;
  }
  if (mode == "concat_all") {
    return Mode::ConcatAll;
  }
  TORCH_CHECK_VALUE(false, op, ": expected mode 'concat', 'multiply' or 'concat_all', got '", mode, "'");
  return Mode::Concat;
}

Geometry check_forward_args(
    const at::Tensor& roi_features,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    Mode mode,
    const char* op) {
  check_floating(roi_features, op, "roi_features");
  TORCH_CHECK_VALUE(
      roi_features.dim() == 4, op, ": expected roi_features of shape [N, C, S, S], got shape ", roi_features.sizes());
  TORCH_CHECK_VALUE(
      roi_features.size(2) > 0 && roi_features.size(3) > 0, op,
      ": expected roi_features of a non-empty spatial size [N, C, S, S], got shape ", roi_features.sizes());
  check_same_device(roi_features, "roi_features", mask_logits, "mask_logits", op);
  TORCH_CHECK_TYPE(
      roi_features.scalar_type() == mask_logits.scalar_type(), op,
      ": expected roi_features and mask_logits of one dtype, got ", roi_features.scalar_type(), " and ",
      mask_logits.scalar_type());
  const Geometry g = geometry_of(
      mask_logits, roi_features.size(0), roi_features.size(1), roi_features.size(2), roi_features.size(3), mode, op);
  check_labels(labels, g, mask_logits, op);
  return g;
}

Geometry check_backward_args(
    const at::Tensor& grad,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& roi_features,
    Mode mode,
    const char* op) {
  check_floating(grad, op, "grad");
  TORCH_CHECK_VALUE(grad.dim() == 4, op, ": expected grad of shape [N, C_out, S, S], got shape ", grad.sizes());
  check_same_device(grad, "grad", mask_logits, "mask_logits", op);
  TORCH_CHECK_TYPE(
      grad.scalar_type() == mask_logits.scalar_type(), op, ": expected grad and mask_logits of one dtype, got ",
      grad.scalar_type(), " and ", mask_logits.scalar_type());
  const bool has_features = roi_features.has_value() && roi_features->defined();
  TORCH_CHECK_VALUE(
      mode != Mode::Multiply || has_features, op, ": expected roi_features in mode 'multiply', got None");
  int64_t channels = 0;
  if (mode == Mode::Multiply) {
    channels = grad.size(1);
  } else if (mode == Mode::Concat) {
    channels = grad.size(1) - 1;
  } else {
    TORCH_CHECK_VALUE(mask_logits.dim() == 4, op, ": expected mask_logits of shape [N, K, M, M], got shape ",
                      mask_logits.sizes());
    channels = grad.size(1) - mask_logits.size(1);
  }
  TORCH_CHECK_VALUE(channels >= 0, op, ": grad of shape ", grad.sizes(), " has too few channels for its mode");
  const Geometry g = geometry_of(mask_logits, grad.size(0), channels, grad.size(2), grad.size(3), mode, op);
  if (mode == Mode::Multiply) {
    TORCH_CHECK_VALUE(
        roi_features->sizes() == grad.sizes(), op, ": expected roi_features of the grad's shape ", grad.sizes(),
        ", got ", roi_features->sizes());
    TORCH_CHECK_TYPE(
        roi_features->scalar_type() == grad.scalar_type(), op, ": expected roi_features of dtype ",
        grad.scalar_type(), ", got ", roi_features->scalar_type());
    check_same_device(grad, "grad", *roi_features, "roi_features", op);
  }
  check_labels(labels, g, mask_logits, op);
  return g;
}

Inputs contiguous_inputs(
    const Geometry& g,
    const at::Tensor& logits,
    const std::optional<at::Tensor>& labels,
    const at::Tensor& features,
    const at::Tensor& grad,
    c10::DeviceType device,
    const char* op) {
  check_device_type(logits, device, op, "mask_logits");
  Inputs in;
  in.logits = logits.contiguous();
  if (features.defined()) {
    in.features = features.contiguous();
  }
  if (grad.defined()) {
    in.grad = grad.contiguous();
  }
  if (uses_labels(g)) {
    in.labels = labels->contiguous();
  }
  return in;
}

}  // namespace msrcnn::mask_pool_concat
