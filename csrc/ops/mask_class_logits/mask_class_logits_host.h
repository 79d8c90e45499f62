#pragma once

// mask_class_logits' argument checks and the GEMM operand layouts, shared by its CPU and CUDA
// entry points.

#include <ATen/core/Tensor.h>

namespace msrcnn::mask_class_logits {

// features [N, Cin, H, W], deconv_weight [Cin, C, 2, 2], deconv_bias [C], class_weight [N, C],
// class_bias [N]: floating, one dtype, one device; ValueError / TypeError naming the argument.
void check_args(const at::Tensor& features, const at::Tensor& deconv_weight, const at::Tensor& deconv_bias,
                const at::Tensor& class_weight, const at::Tensor& class_bias, const char* op);

// The features as GEMM rows [N * H * W, Cin] (a view where they are channels-last).
at::Tensor feature_rows(const at::Tensor& features);

// The weight as [Cin, 4 * C], columns in (i, j, c) order.
at::Tensor weight_columns(const at::Tensor& deconv_weight);

}  // namespace msrcnn::mask_class_logits
