#include "ops/group_norm_relu/group_norm_relu_host.h"

#include <ATen/ops/native_group_norm.h>
#include <ATen/ops/native_group_norm_backward.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/threshold_backward.h>

namespace msrcnn::group_norm_relu {

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

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
