#include "ops/conv3x3/conv3x3_host.h"

#include <atomic>

#include <ATen/ops/conv2d.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "common/checks.h"
#include "common/large_tensors.h"

namespace msrcnn::conv3x3 {

void check_args(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                int64_t stride, const char* op) {
  TORCH_CHECK_VALUE(stride == 1 || stride == 2, op, ": expected stride 1 or 2, got ", stride);
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

at::Tensor empty_output(const at::Tensor& input, const at::Tensor& weight, int64_t stride) {
  return empty_large(
      {input.size(0), weight.size(0), output_size(input.size(2), stride), output_size(input.size(3), stride)},
      input.options(), at::MemoryFormat::ChannelsLast);
}

at::Tensor bias_only(at::Tensor output, const std::optional<at::Tensor>& bias, bool relu) {
  output.zero_();
  if (bias.has_value()) {
    output.add_(bias->reshape({1, -1, 1, 1}));
  }
  return relu ? output.clamp_min_(0) : output;
}

namespace {

at::Tensor to_channels_last(const at::Tensor& result, at::Tensor output) {
  if (result.strides() == output.strides()) {
    return result;
  }
  output.copy_(result);
  return output;
}

}  // namespace

at::Tensor aten_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        int64_t stride, bool relu) {
  at::Tensor output = empty_output(input, weight, stride);
  if (output.numel() == 0) {
    return output;
  }
  if (input.size(1) == 0) {  // ATen's convolution returns no channels here
    return bias_only(output, bias, relu);
  }
  // A channels-last input makes ATen's convolution (oneDNN, cuDNN) write channels-last.
  at::Tensor result = at::conv2d(input.contiguous(at::MemoryFormat::ChannelsLast), weight, bias, stride, 1);
  if (relu) {
    result.relu_();
  }
  return to_channels_last(result, output);
}

at::Tensor aten_backward_input(const at::Tensor& grad, const at::Tensor& weight, int64_t stride, int64_t height,
                               int64_t width) {
  const int64_t n = grad.size(0);
  const int64_t in_channels = weight.size(1);
  at::Tensor output = at::empty({n, in_channels, height, width}, grad.options(), at::MemoryFormat::ChannelsLast);
  if (output.numel() == 0) {
    return output;
  }
  if (grad.numel() == 0) {  // no output channels (or pixels): nothing flows back
    return output.zero_();
  }
  // convolution_backward reads only the input's sizes for the input gradient.
  const at::Tensor input = at::empty({1}, grad.options()).expand({n, in_channels, height, width});
  const auto grads = at::convolution_backward(
      grad, input, weight, std::nullopt, {stride, stride}, {1, 1}, {1, 1}, false, {0, 0}, 1, {true, false, false});
  return to_channels_last(std::get<0>(grads), output);
}

std::tuple<at::Tensor, at::Tensor> aten_backward_weight(const at::Tensor& grad, const at::Tensor& input,
                                                        int64_t stride) {
  const int64_t out_channels = grad.size(1);
  const int64_t in_channels = input.size(1);
  at::Tensor grad_bias = grad.sum({0, 2, 3});
  if (grad.numel() == 0 || input.numel() == 0) {
    return {at::zeros({out_channels, in_channels, 3, 3}, grad.options()), grad_bias};
  }
  at::Tensor x = input;
  at::Tensor g = grad;
  // oneDNN's weight gradient on channels-last CPU maps is slower than on NCHW ones from about
  // 32x32 on: 3.5x at 200x272, 2.9x at 100x136, 1.6x at 50x68, even at 25x34, conversions
  // included; equal or slower at 14x14 (2-core AVX2 EPYC, 256 channels, batch 2).
  constexpr int64_t kNchwMinPixels = 32 * 32;
  if (input.is_cpu() && input.size(2) * input.size(3) >= kNchwMinPixels) {
    x = input.contiguous();
    g = grad.contiguous();
  }
  // convolution_backward reads only the weight's sizes for the weight gradient.
  const at::Tensor weight = at::empty({1}, grad.options()).expand({out_channels, in_channels, 3, 3});
  const auto grads = at::convolution_backward(
      g, x, weight, std::nullopt, {stride, stride}, {1, 1}, {1, 1}, false, {0, 0}, 1, {false, true, false});
  return {std::get<1>(grads).contiguous(), grad_bias};
}

namespace {
std::atomic<int64_t> forced_tile{0};
}  // namespace

void set_winograd_tile(int64_t tile) {
  TORCH_CHECK_VALUE(tile == 0 || tile == 2 || tile == 4 || tile == 7,
                    "msrcnn: Winograd tile must be 0 (by map size), 2, 4 or 7, got ", tile);
  forced_tile.store(tile, std::memory_order_relaxed);
}

int64_t forced_winograd_tile() {
  return forced_tile.load(std::memory_order_relaxed);
}

}  // namespace msrcnn::conv3x3
