#include "ops/winograd_conv3x3/winograd_conv3x3_host.h"

#include <ATen/ops/conv2d.h>
#include <ATen/ops/empty.h>

#include "common/checks.h"

namespace msrcnn::winograd_conv3x3 {

void check_args(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                const char* op) {
  check_dim(input, 4, op, "input [N, Cin, H, W]");
  check_dim(weight, 4, op, "weight [Cout, Cin, 3, 3]");
  TORCH_CHECK_VALUE(
      weight.size(1) == input.size(1) && weight.size(2) == 3 && weight.size(3) == 3, op, ": expected weight [Cout, ",
      input.size(1), ", 3, 3] for input ", input.sizes(), ", got shape ", weight.sizes());
  check_floating(input, op, "input");
  TORCH_CHECK_TYPE(
      weight.scalar_type() == input.scalar_type(), op, ": expected weight of the input's dtype ",
      input.scalar_type(), ", got ", weight.scalar_type());
  check_same_device(input, "input", weight, "weight", op);
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(
        bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": expected bias [", weight.size(0),
        "], got shape ", bias->sizes());
    TORCH_CHECK_TYPE(
        bias->scalar_type() == input.scalar_type(), op, ": expected bias of the input's dtype ", input.scalar_type(),
        ", got ", bias->scalar_type());
    check_same_device(input, "input", *bias, "bias", op);
  }
}

at::Tensor empty_output(const at::Tensor& input, const at::Tensor& weight) {
  return at::empty(
      {input.size(0), weight.size(0), input.size(2), input.size(3)}, input.options(), at::MemoryFormat::ChannelsLast);
}

at::Tensor bias_only(at::Tensor output, const std::optional<at::Tensor>& bias, bool relu) {
  output.zero_();
  if (bias.has_value()) {
    output.add_(bias->reshape({1, -1, 1, 1}));
  }
  return relu ? output.clamp_min_(0) : output;
}

at::Tensor aten_conv3x3(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        bool relu) {
  at::Tensor output = empty_output(input, weight);
  if (output.numel() == 0) {
    return output;
  }
  if (input.size(1) == 0) {  // ATen's convolution returns no channels here
    return bias_only(output, bias, relu);
  }
  // A channels-last input makes ATen's convolution (oneDNN, cuDNN) write channels-last.
  at::Tensor result =
      at::conv2d(input.contiguous(at::MemoryFormat::ChannelsLast), weight, bias, /*stride=*/1, /*padding=*/1);
  if (relu) {
    result.relu_();
  }
  if (result.strides() == output.strides()) {
    return result;
  }
  output.copy_(result);
  return output;
}

}  // namespace msrcnn::winograd_conv3x3
