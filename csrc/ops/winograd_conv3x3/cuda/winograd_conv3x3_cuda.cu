// winograd_conv3x3 on CUDA: ATen's convolution (cuDNN, which picks its own algorithm, Winograd
// included) + bias + ReLU, channels-last like the CPU kernel. No custom kernel: cuDNN is already
// fast here; the op exists on CUDA so that models calling it run on either device.

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <optional>

#include "common/checks.h"
#include "ops/winograd_conv3x3/winograd_conv3x3_host.h"

namespace msrcnn::winograd_conv3x3 {
namespace {

at::Tensor winograd_conv3x3_cuda(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, bool relu) {
  const char* op = "msrcnn::winograd_conv3x3";
  check_args(input, weight, bias, op);
  check_device_type(input, c10::DeviceType::CUDA, op, "input");
  const c10::cuda::CUDAGuard guard(input.device());
  return aten_conv3x3(input, weight, bias, relu);
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("winograd_conv3x3", &winograd_conv3x3_cuda);
}

}  // namespace msrcnn::winograd_conv3x3
