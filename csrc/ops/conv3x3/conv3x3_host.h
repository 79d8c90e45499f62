#pragma once

// conv3x3's argument checks and its ATen paths, shared by the CPU entry points.

#include <ATen/core/Tensor.h>

#include <optional>

namespace msrcnn::conv3x3 {

// (size - 1) / stride + 1: the output size of a padding-1 3x3 convolution.
inline int64_t output_size(int64_t size, int64_t stride) {
  return size == 0 ? 0 : (size - 1) / stride + 1;
}

// stride 1 or 2; input [N, Cin, H, W], weight [Cout, Cin, 3, 3], bias [Cout] or none: one
// floating dtype, one device. The entry point checks that the device is its own.
void check_args(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                int64_t stride, const char* op);

// An empty channels-last [N, Cout, Ho, Wo] output: the layout every path returns (also where
// the NCHW and NHWC layouts coincide, C == 1 or H == W == 1: channel stride 1).
at::Tensor empty_output(const at::Tensor& input, const at::Tensor& weight, int64_t stride);

// `output` = relu?(bias), broadcast: the convolution of an input with no channels.
at::Tensor bias_only(at::Tensor output, const std::optional<at::Tensor>& bias, bool relu);

// relu?(conv2d(input, weight, bias, stride, 1)) by ATen's convolution, into a channels-last output.
at::Tensor aten_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        int64_t stride, bool relu);

// The input gradient [N, Cin, height, width] of conv2d(input, weight, stride, padding=1) for the
// output gradient `grad`, by ATen's convolution_backward, channels-last.
at::Tensor aten_backward_input(const at::Tensor& grad, const at::Tensor& weight, int64_t stride, int64_t height,
                               int64_t width);

// The weight gradient [Cout, Cin, 3, 3] (contiguous) and bias gradient [Cout].
std::tuple<at::Tensor, at::Tensor> aten_backward_weight(const at::Tensor& grad, const at::Tensor& input,
                                                        int64_t stride);

// The Winograd tile the CPU kernels use at stride 1: 0 (the default) lets each call choose by its
// map size; 2 or 4 forces F(2x2, 3x3) or F(4x4, 3x3) everywhere (for tests and measurements).
// Raises for any other value.
void set_winograd_tile(int64_t tile);
int64_t forced_winograd_tile();

}  // namespace msrcnn::conv3x3
