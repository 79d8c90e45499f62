#pragma once

// group_norm_relu in float64 on every device: ATen's GroupNorm (the reference precision: the
// kernels compute in float32) and the ReLU, with the op's layout (channels-last output) and
// statistics ([N, num_groups], float64).

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace msrcnn::group_norm_relu {

std::tuple<at::Tensor, at::Tensor, at::Tensor> aten_forward(const at::Tensor& input, int64_t num_groups,
                                                            const std::optional<at::Tensor>& weight,
                                                            const std::optional<at::Tensor>& bias, double eps,
                                                            bool relu);

std::tuple<at::Tensor, at::Tensor, at::Tensor> aten_backward(const at::Tensor& grad, const at::Tensor& input,
                                                             const at::Tensor& output, const at::Tensor& mean,
                                                             const at::Tensor& rstd,
                                                             const std::optional<at::Tensor>& weight,
                                                             int64_t num_groups, bool relu);

}  // namespace msrcnn::group_norm_relu
