// group_norm_relu CPU entry points: argument checks, float32 channels-last copies of the inputs
// where they are not already, defaults for a missing weight (ones) or bias (zeros); the kernels
// are in group_norm_relu_cpu_kernel.cpp (per CPU capability). Outputs are channels-last in the
// input's dtype; mean and rstd float32 [N, num_groups].

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "common/checks.h"
#include "ops/group_norm_relu/group_norm_relu_host.h"
#include "common/cpu_capability.h"
#include "ops/group_norm_relu/cpu/group_norm_relu_cpu_kernel.h"

namespace msrcnn::group_norm_relu {
namespace {

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

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
  check_device_type(*p, c10::DeviceType::CPU, op, name);
}

void check_groups(const at::Tensor& input, int64_t num_groups, const char* op) {
  check_dim(input, 4, op, "input [N, C, H, W]");
  check_floating(input, op, "input");
  check_device_type(input, c10::DeviceType::CPU, op, "input");
  TORCH_CHECK_VALUE(
      num_groups >= 1 && input.size(1) % num_groups == 0, op, ": expected num_groups >= 1 dividing the ",
      input.size(1), " channels of input, got ", num_groups);
}

at::Tensor float_channels_last(const at::Tensor& t) {
  return t.to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, kChannelsLast).contiguous(kChannelsLast);
}

at::Tensor float_parameter(const std::optional<at::Tensor>& p, int64_t channels, float fill, const at::Tensor& like) {
  if (p.has_value()) {
    return p->to(at::kFloat).contiguous();
  }
  return fill == 1.0f ? at::ones({channels}, like.options().dtype(at::kFloat))
                      : at::zeros({channels}, like.options().dtype(at::kFloat));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_relu_cpu(const at::Tensor& input, int64_t num_groups,
                                                                   const std::optional<at::Tensor>& weight,
                                                                   const std::optional<at::Tensor>& bias, double eps,
                                                                   bool relu) {
  const char* op = "msrcnn::group_norm_relu";
  check_groups(input, num_groups, op);
  check_parameter(weight, input, op, "weight");
  check_parameter(bias, input, op, "bias");
  TORCH_CHECK_VALUE(eps >= 0.0 && std::isfinite(eps), op, ": expected eps >= 0, got ", eps);
  if (input.scalar_type() == at::kDouble) {
    return aten_forward(input, num_groups, weight, bias, eps, relu);
  }
  const int64_t images = input.size(0), channels = input.size(1);
  at::Tensor mean = at::empty({images, num_groups}, input.options().dtype(at::kFloat));
  at::Tensor rstd = at::empty({images, num_groups}, input.options().dtype(at::kFloat));
  const at::Tensor x = float_channels_last(input);
  at::Tensor y = at::empty(x.sizes(), x.options(), kChannelsLast);
  if (images > 0 && channels > 0) {
    if (input.size(2) * input.size(3) == 0) {  // groups of no element: mean 0, variance 0
      mean.zero_();
      rstd.fill_(1.0 / std::sqrt(eps));
    } else {
      const at::Tensor w = float_parameter(weight, channels, 1.0f, input);
      const at::Tensor b = float_parameter(bias, channels, 0.0f, input);
      MSRCNN_CPU_DISPATCH(::msrcnn::group_norm_relu, forward_kernel, x, num_groups, w, b, eps, relu, y, mean, rstd);
    }
  }
  return {y.to(input.scalar_type(), /*non_blocking=*/false, /*copy=*/false, kChannelsLast), mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_relu_backward_cpu(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& output, const at::Tensor& mean,
    const at::Tensor& rstd, const std::optional<at::Tensor>& weight, int64_t num_groups, bool relu) {
  const char* op = "msrcnn::_group_norm_relu_backward";
  check_groups(input, num_groups, op);
  check_parameter(weight, input, op, "weight");
  TORCH_CHECK_VALUE(grad.sizes() == input.sizes() && output.sizes() == input.sizes(), op,
                    ": expected grad and output of input's shape ", input.sizes(), ", got ", grad.sizes(), " and ",
                    output.sizes());
  const int64_t images = input.size(0), channels = input.size(1);
  TORCH_CHECK_VALUE(mean.sizes() == rstd.sizes() && mean.dim() == 2 && mean.size(0) == images &&
                        mean.size(1) == num_groups,
                    op, ": expected mean and rstd [", images, ", ", num_groups, "], got ", mean.sizes(), " and ",
                    rstd.sizes());
  if (input.scalar_type() == at::kDouble) {
    return aten_backward(grad, input, output, mean, rstd, weight, num_groups, relu);
  }
  const at::Tensor x = float_channels_last(input);
  at::Tensor dx = at::empty(x.sizes(), x.options(), kChannelsLast);
  at::Tensor dw = at::zeros({channels}, x.options());
  at::Tensor db = at::zeros({channels}, x.options());
  if (x.numel() > 0) {
    const at::Tensor w = float_parameter(weight, channels, 1.0f, input);
    MSRCNN_CPU_DISPATCH(::msrcnn::group_norm_relu, backward_kernel, float_channels_last(grad), x,
                        float_channels_last(output), mean.to(at::kFloat).contiguous(),
                        rstd.to(at::kFloat).contiguous(), w, num_groups, relu, dx, dw, db);
  }
  const auto dtype = input.scalar_type();
  return {dx.to(dtype, /*non_blocking=*/false, /*copy=*/false, kChannelsLast), dw.to(dtype), db.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("group_norm_relu", &group_norm_relu_cpu);
  m.impl("_group_norm_relu_backward", &group_norm_relu_backward_cpu);
}

}  // namespace msrcnn::group_norm_relu
