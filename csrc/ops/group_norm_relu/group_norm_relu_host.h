#pragma once

// What the devices' entries of group_norm_relu share: the argument checks, the float32
// channels-last inputs and parameters the kernels read, and the float64 path on every device:
// ATen's GroupNorm (the reference precision: the kernels compute in float32) and the ReLU, with
// the op's layout (channels-last output) and statistics ([N, num_groups], float64).

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>

#include <optional>
#include <tuple>

namespace msrcnn::group_norm_relu {

// input [N, C, H, W] floating on `device`, num_groups dividing C, weight and bias (if given) [C]
// of input's dtype on its device, eps >= 0; errors name the argument.
void check_forward_args(const at::Tensor& input, int64_t num_groups, const std::optional<at::Tensor>& weight,
                        const std::optional<at::Tensor>& bias, double eps, c10::DeviceType device, const char* op);

// The backward op's arguments as the autograd formula passes them (checked for direct callers):
// input as forward's, grad and output of its shape and device, mean and rstd [N, num_groups].
void check_backward_args(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& output,
                         const at::Tensor& mean, const at::Tensor& rstd, const std::optional<at::Tensor>& weight,
                         int64_t num_groups, c10::DeviceType device, const char* op);

// `t` as float32 channels-last (no copy where it already is).
at::Tensor float_channels_last(const at::Tensor& t);

// A parameter as float32 [C], or `fill` (1 for a missing weight, 0 for a missing bias).
at::Tensor float_parameter(const std::optional<at::Tensor>& p, int64_t channels, float fill, const at::Tensor& like);

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
