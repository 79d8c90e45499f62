#include "ops/group_norm_relu/group_norm_relu_host.h"

#include <ATen/ops/full.h>
#include <ATen/ops/native_group_norm.h>
#include <ATen/ops/native_group_norm_backward.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/threshold_backward.h>

#include <cmath>

#include "common/checks.h"

namespace msrcnn::group_norm_relu {

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

namespace {

void check_input(const at::Tensor& input, int64_t num_groups, c10::DeviceType device, const char* op) {
  check_dim(input, 4, op, "input [N, C, H, W]");
  check_floating(input, op, "input");
  check_device_type(input, device, op, "input");
  TORCH_CHECK_VALUE(
      num_groups >= 1 && input.size(1) % num_groups == 0, op, ": expected num_groups >= 1 dividing the ",
      input.size(1), " channels of input, got ", num_groups);
}

void check_parameter(const std::optional<at::Tensor>& p, const at::Tensor& input, const char* op, const char* name) {
  if (!p.has_value()) {
    return;
  }
  TORCH_CHECK_VALUE(
      p->dim() == 1 && p->size(0) == input.size(1), op, ": expected ", name, " [", input.size(1),
      "] (one per channel of input), got shape ", p->sizes());
  TORCH_CHECK_TYPE(
      p->scalar_type() == input.scalar_type(), op, ": expected ", name, " of input's dtype ", input.scalar_type(),
      ", got ", p->scalar_type());
  check_same_device(input, "input", *p, name, op);
}

}  // namespace

void check_forward_args(const at::Tensor& input, int64_t num_groups, const std::optional<at::Tensor>& weight,
                        const std::optional<at::Tensor>& bias, double eps, c10::DeviceType device, const char* op) {
  check_input(input, num_groups, device, op);
  check_parameter(weight, input, op, "weight");
  check_parameter(bias, input, op, "bias");
  TORCH_CHECK_VALUE(eps >= 0.0 && std::isfinite(eps), op, ": expected eps >= 0, got ", eps);
}

void check_backward_args(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& output,
                         const at::Tensor& mean, const at::Tensor& rstd, const std::optional<at::Tensor>& weight,
                         int64_t num_groups, c10::DeviceType device, const char* op) {
  check_input(input, num_groups, device, op);
  check_parameter(weight, input, op, "weight");
  TORCH_CHECK_VALUE(
      grad.sizes() == input.sizes() && output.sizes() == input.sizes(), op,
      ": expected grad and output of input's shape ", input.sizes(), ", got ", grad.sizes(), " and ", output.sizes());
  TORCH_CHECK_VALUE(
      mean.sizes() == rstd.sizes() && mean.dim() == 2 && mean.size(0) == input.size(0) && mean.size(1) == num_groups,
      op, ": expected mean and rstd [", input.size(0), ", ", num_groups, "], got ", mean.sizes(), " and ",
      rstd.sizes());
  check_same_device(input, "input", grad, "grad", op);
  check_same_device(input, "input", output, "output", op);
  check_same_device(input, "input", mean, "mean", op);
  check_same_device(input, "input", rstd, "rstd", op);
}

at::Tensor float_channels_last(const at::Tensor& t) {
  return t.to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, kChannelsLast).contiguous(kChannelsLast);
}

at::Tensor float_parameter(const std::optional<at::Tensor>& p, int64_t channels, float fill, const at::Tensor& like) {
  if (p.has_value()) {
    return p->to(at::kFloat).contiguous();
  }
  return at::full({channels}, fill, like.options().dtype(at::kFloat));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> aten_forward(const at::Tensor& input, int64_t num_groups,
                                                            const std::optional<at::Tensor>& weight,
                                                            const std::optional<at::Tensor>& bias, double eps,
                                                            bool relu) {
  const int64_t images = input.size(0), channels = input.size(1), rows = input.size(2) * input.size(3);
  auto [y, mean, rstd] =
      at::native_group_norm(input.contiguous(), weight, bias, images, channels, rows, num_groups, eps);
  if (relu) {
    y = at::relu(y);
  }
  return {y.contiguous(kChannelsLast), mean.reshape({images, num_groups}), rstd.reshape({images, num_groups})};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> aten_backward(const at::Tensor& grad, const at::Tensor& input,
                                                             const at::Tensor& output, const at::Tensor& mean,
                                                             const at::Tensor& rstd,
                                                             const std::optional<at::Tensor>& weight,
                                                             int64_t num_groups, bool relu) {
  const int64_t images = input.size(0), channels = input.size(1), rows = input.size(2) * input.size(3);
  at::Tensor g = grad.contiguous();
  if (relu) {
    g = at::threshold_backward(g, output.contiguous(), 0);
  }
  auto [dx, dw, db] = at::native_group_norm_backward(g, input.contiguous(), mean.contiguous(), rstd.contiguous(),
                                                     weight, images, channels, rows, num_groups, {true, true, true});
  return {dx.contiguous(kChannelsLast), dw, db};
}

}  // namespace msrcnn::group_norm_relu
