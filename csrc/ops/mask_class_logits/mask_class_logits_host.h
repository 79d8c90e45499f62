#pragma once

// mask_class_logits' argument checks and the GEMM operand layouts, shared by its CPU and CUDA
// entry points.

#include <ATen/core/Tensor.h>

#include "ops/mask_class_logits/mask_class_logits_math.h"

namespace msrcnn::mask_class_logits {

// features [N, Cin, H, W], deconv_weight [Cin, C, 2, 2], deconv_bias [C], class_weight [N, C],
// class_bias [N]: floating, one dtype, one device; ValueError / TypeError naming the argument.
void check_args(const at::Tensor& features, const at::Tensor& deconv_weight, const at::Tensor& deconv_bias,
                const at::Tensor& class_weight, const at::Tensor& class_bias, const char* op);

// The features as GEMM rows [N * H * W, Cin] (a view where they are channels-last).
at::Tensor feature_rows(const at::Tensor& features);

// The weight as [Cin, 4 * C], columns in (i, j, c) order.
at::Tensor weight_columns(const at::Tensor& deconv_weight);

// The element body's arguments: `pre` the GEMM's product [N * H * W, 4C], the others contiguous.
template <typename scalar_t, typename T>
Args<scalar_t, T> make_args(const at::Tensor& pre, const at::Tensor& deconv_bias, const at::Tensor& class_weight,
                            const at::Tensor& class_bias, int64_t height, int64_t width) {
  return {pre.const_data_ptr<scalar_t>(), deconv_bias.const_data_ptr<scalar_t>(),
          class_weight.const_data_ptr<scalar_t>(), class_bias.const_data_ptr<scalar_t>(), height, width,
          deconv_bias.size(0)};
}

}  // namespace msrcnn::mask_class_logits
