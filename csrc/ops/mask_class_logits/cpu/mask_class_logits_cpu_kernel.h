#pragma once

// mask_class_logits' CPU kernel, compiled once per CPU capability (DEFAULT, AVX2, AVX512).

#include <ATen/core/Tensor.h>

namespace msrcnn::mask_class_logits {

// rows: the features as [N * H * W, Cin], columns: the weight as [Cin, 4 * C] (see
// mask_class_logits_host.h), the biases and class weights contiguous, all float or all double
// (rows and columns may be bfloat16 with the rest float: a bfloat16 GEMM);
// output: [N, 1, 2H, 2W] contiguous, every element written. Parallel over blocks of one RoI's
// rows: each block's GEMM product stays in cache for the ReLU and the class's dot product.
#define MSRCNN_DECLARE_MASK_CLASS_LOGITS_CPU_KERNELS(CAPABILITY)                                              \
  namespace CAPABILITY {                                                                                   \
  void logits_kernel(const at::Tensor& rows, const at::Tensor& columns, const at::Tensor& deconv_bias,     \
                     const at::Tensor& class_weight, const at::Tensor& class_bias, int64_t height, int64_t width, \
                     at::Tensor& output);                                                                  \
  }

MSRCNN_DECLARE_MASK_CLASS_LOGITS_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_MASK_CLASS_LOGITS_CPU_KERNELS(AVX2)
MSRCNN_DECLARE_MASK_CLASS_LOGITS_CPU_KERNELS(AVX512)

#undef MSRCNN_DECLARE_MASK_CLASS_LOGITS_CPU_KERNELS

}  // namespace msrcnn::mask_class_logits
