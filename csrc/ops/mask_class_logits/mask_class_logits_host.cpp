// mask_class_logits' argument checks and GEMM operands (mask_class_logits_host.h).

#include "ops/mask_class_logits/mask_class_logits_host.h"

#include <c10/util/Exception.h>

#include "common/checks.h"

namespace msrcnn::mask_class_logits {

void check_args(const at::Tensor& features, const at::Tensor& deconv_weight, const at::Tensor& deconv_bias,
                const at::Tensor& class_weight, const at::Tensor& class_bias, const char* op) {
  check_dim(features, 4, op, "features");
  check_dim(deconv_weight, 4, op, "deconv_weight");
  check_dim(deconv_bias, 1, op, "deconv_bias");
  check_dim(class_weight, 2, op, "class_weight");
  check_dim(class_bias, 1, op, "class_bias");
  check_floating(features, op, "features");
  const std::pair<const at::Tensor*, const char*> others[] = {
      {&deconv_weight, "deconv_weight"}, {&deconv_bias, "deconv_bias"}, {&class_weight, "class_weight"},
      {&class_bias, "class_bias"}};
  for (const auto& [t, name] : others) {
    TORCH_CHECK_TYPE(t->scalar_type() == features.scalar_type(), op, ": expected ", name, " of the features' dtype ",
                     features.scalar_type(), ", got ", t->scalar_type());
    check_same_device(features, "features", *t, name, op);
  }
  const int64_t n = features.size(0);
  const int64_t in_channels = features.size(1);
  TORCH_CHECK_VALUE(deconv_weight.size(0) == in_channels && deconv_weight.size(2) == 2 && deconv_weight.size(3) == 2,
                    op, ": expected deconv_weight of shape [", in_channels, ", C, 2, 2] (the features have ",
                    in_channels, " channels), got ", deconv_weight.sizes());
  const int64_t channels = deconv_weight.size(1);
  TORCH_CHECK_VALUE(channels > 0, op, ": expected deconv_weight with at least one output channel, got shape ",
                    deconv_weight.sizes());
  TORCH_CHECK_VALUE(deconv_bias.size(0) == channels, op, ": expected deconv_bias of shape [", channels,
                    "] (deconv_weight's output channels), got ", deconv_bias.sizes());
  TORCH_CHECK_VALUE(class_weight.size(0) == n && class_weight.size(1) == channels, op,
                    ": expected class_weight of shape [", n, ", ", channels, "] (one row per RoI), got ",
                    class_weight.sizes());
  TORCH_CHECK_VALUE(class_bias.size(0) == n, op, ": expected class_bias of shape [", n, "] (one per RoI), got ",
                    class_bias.sizes());
}

at::Tensor feature_rows(const at::Tensor& features) {
  return features.permute({0, 2, 3, 1}).reshape({-1, features.size(1)}).contiguous();
}

at::Tensor weight_columns(const at::Tensor& deconv_weight) {
  return deconv_weight.permute({0, 2, 3, 1}).reshape({deconv_weight.size(0), -1}).contiguous();
}

}  // namespace msrcnn::mask_class_logits
