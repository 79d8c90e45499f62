#pragma once

// group_norm_relu's CPU kernels, compiled once per CPU capability (DEFAULT, AVX2, AVX512).
// Parallel over images; each image's outputs written by one thread. Float32, channels-last
// ([N, C, H, W] with channel stride 1 and H, W dense: the layout msrcnn::conv3x3 writes) with C
// a multiple of the vector width handled by whole vectors, other C by a masked last vector.

#include <ATen/core/Tensor.h>

namespace msrcnn::group_norm_relu {

// input, output [N, C, H, W] channels-last contiguous float; weight, bias [C] float; mean, rstd
// [N, G] float contiguous.
// backward: grad, input, output channels-last contiguous; grad_input likewise; grad_weight,
// grad_bias [C] (summed over images).
#define MSRCNN_DECLARE_GROUP_NORM_RELU_CPU_KERNELS(CAPABILITY)                                               \
  namespace CAPABILITY {                                                                                     \
  void forward_kernel(const at::Tensor& input, int64_t groups, const at::Tensor& weight, const at::Tensor& bias, \
                      double eps, bool relu, at::Tensor& output, at::Tensor& mean, at::Tensor& rstd);         \
  void backward_kernel(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& output,               \
                       const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight, int64_t groups, \
                       bool relu, at::Tensor& grad_input, at::Tensor& grad_weight, at::Tensor& grad_bias);     \
  }

MSRCNN_DECLARE_GROUP_NORM_RELU_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_GROUP_NORM_RELU_CPU_KERNELS(AVX2)
MSRCNN_DECLARE_GROUP_NORM_RELU_CPU_KERNELS(AVX512)

#undef MSRCNN_DECLARE_GROUP_NORM_RELU_CPU_KERNELS

}  // namespace msrcnn::group_norm_relu
