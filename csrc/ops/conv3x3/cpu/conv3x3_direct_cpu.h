#pragma once

// conv3x3 at stride 1 as one GEMM over im2col columns: the path for maps with few pixels and
// many channels (the C5 stage of a small image), where Winograd's transformed filters (16 or
// 36 planes of Cin x Cout) cost more memory traffic than the 2.25-4x multiplications they save.
// float32; inputs with channel stride 1 (any strides of N, H, W).

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace msrcnn::conv3x3 {

// relu?(conv2d(input, weight', bias, 1, 1)) into `output` [N, Cout, H, W] (channels-last), where
// weight' is `weight` [Cout, Cin, 3, 3] (any strides) with its filters rotated by 180° if `flip`.
void direct_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    bool relu, bool flip, at::Tensor& output);

// The weight gradient [Cout, Cin, 3, 3] (contiguous) of conv2d(input, weight, stride=1, padding=1)
// for the output gradient `grad` [N, Cout, H, W].
at::Tensor direct_backward_weight(const at::Tensor& grad, const at::Tensor& input);

}  // namespace msrcnn::conv3x3
