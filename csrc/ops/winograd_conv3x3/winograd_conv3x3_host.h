#pragma once

// Argument checks and the ATen fallback shared by winograd_conv3x3's CPU and CUDA entry points.

#include <ATen/core/Tensor.h>

#include <optional>

namespace msrcnn::winograd_conv3x3 {

// input [N, Cin, H, W], weight [Cout, Cin, 3, 3], bias [Cout] or none: one floating dtype, one
// device. The entry point checks that the device is its own.
void check_args(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                const char* op);

// An empty channels-last [N, Cout, H, W] output: the layout every path returns (also where
// the NCHW and NHWC layouts coincide, C == 1 or H == W == 1: channel stride 1).
at::Tensor empty_output(const at::Tensor& input, const at::Tensor& weight);

// `output` = relu?(bias), broadcast: the convolution of an input with no channels.
at::Tensor bias_only(at::Tensor output, const std::optional<at::Tensor>& bias, bool relu);

// relu?(conv2d(input, weight, bias, 1, 1)) by ATen's convolution, into a channels-last output.
at::Tensor aten_conv3x3(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        bool relu);

}  // namespace msrcnn::winograd_conv3x3
