// group_norm_relu CPU entry points (checks and float32 channels-last inputs: group_norm_relu_host;
// the kernels: group_norm_relu_cpu_kernel.cpp, per CPU capability). Outputs are channels-last in
// the input's dtype; mean and rstd float32 [N, num_groups].

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "common/cpu_capability.h"
#include "common/large_tensors.h"
#include "ops/group_norm_relu/group_norm_relu_host.h"
#include "ops/group_norm_relu/cpu/group_norm_relu_cpu_kernel.h"

namespace msrcnn::group_norm_relu {
namespace {

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_relu_cpu(const at::Tensor& input, int64_t num_groups,
                                                                   const std::optional<at::Tensor>& weight,
                                                                   const std::optional<at::Tensor>& bias, double eps,
                                                                   bool relu) {
  check_forward_args(input, num_groups, weight, bias, eps, c10::DeviceType::CPU, "msrcnn::group_norm_relu");
  if (input.scalar_type() == at::kDouble) {
    return aten_forward(input, num_groups, weight, bias, eps, relu);
  }
  const int64_t images = input.size(0), channels = input.size(1);
  at::Tensor mean = at::empty({images, num_groups}, input.options().dtype(at::kFloat));
  at::Tensor rstd = at::empty({images, num_groups}, input.options().dtype(at::kFloat));
  const at::Tensor x = float_channels_last(input);
  at::Tensor y = empty_large(x.sizes(), x.options(), kChannelsLast);
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
  check_backward_args(grad, input, output, mean, rstd, weight, num_groups, c10::DeviceType::CPU,
                      "msrcnn::_group_norm_relu_backward");
  const int64_t channels = input.size(1);
  if (input.scalar_type() == at::kDouble) {
    return aten_backward(grad, input, output, mean, rstd, weight, num_groups, relu);
  }
  const at::Tensor x = float_channels_last(input);
  at::Tensor dx = empty_large(x.sizes(), x.options(), kChannelsLast);
  at::Tensor dw = at::zeros({channels}, x.options());
  at::Tensor db = at::zeros({channels}, x.options());
  if (x.numel() > 0) {
    const at::Tensor w = float_parameter(weight, channels, 1.0f, input);
    // Without the ReLU the kernel does not read the output (its mask): no copy of it.
    MSRCNN_CPU_DISPATCH(::msrcnn::group_norm_relu, backward_kernel, float_channels_last(grad), x,
                        relu ? float_channels_last(output) : x, mean.to(at::kFloat).contiguous(),
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
