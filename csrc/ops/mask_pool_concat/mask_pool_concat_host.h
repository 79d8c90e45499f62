#pragma once

// Host-side preparation shared by mask_pool_concat's CPU and CUDA entry points: argument
// checks, the geometry, the element-body arguments.

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>

#include "ops/mask_pool_concat/mask_pool_concat_math.h"

namespace msrcnn::mask_pool_concat {

// "concat", "multiply" or "concat_all"; raises for anything else.
Mode parse_mode(c10::string_view mode, const char* op);

// Checks roi_features [N, C, S_h, S_w], mask_logits [N, K, M_h, M_w] (M a multiple of S) and
// labels [N] int64 (required when the mode pools one class of K > 1), returns the geometry.
// Label values are checked by the backends (the CPU reads them, CUDA asserts in-kernel).
Geometry check_forward_args(
    const at::Tensor& roi_features,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    Mode mode,
    const char* op);

// Checks grad against the output shape of `geometry`; roi_features is required in Multiply mode.
Geometry check_backward_args(
    const at::Tensor& grad,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& roi_features,
    Mode mode,
    const char* op);

// Whether `labels` is read at all: one class pooled out of several.
inline bool uses_labels(const Geometry& g) {
  return g.mode != Mode::ConcatAll && g.classes > 1;
}

// The contiguous tensors a kernel reads; labels only where they are used.
struct Inputs {
  at::Tensor features;
  at::Tensor logits;
  at::Tensor labels;
  at::Tensor grad;
};

// Checks that mask_logits is on a `device` device and returns the inputs contiguous; features
// and grad may be undefined (not read), labels are kept where uses_labels(g).
Inputs contiguous_inputs(
    const Geometry& g,
    const at::Tensor& logits,
    const std::optional<at::Tensor>& labels,
    const at::Tensor& features,
    const at::Tensor& grad,
    c10::DeviceType device,
    const char* op);

template <typename scalar_t>
Args<scalar_t> make_args(const Geometry& geometry, const Inputs& in) {
  Args<scalar_t> args{};
  args.geometry = geometry;
  args.features = in.features.defined() ? in.features.const_data_ptr<scalar_t>() : nullptr;
  args.logits = in.logits.const_data_ptr<scalar_t>();
  args.labels = in.labels.defined() ? in.labels.const_data_ptr<int64_t>() : nullptr;
  args.grad = in.grad.defined() ? in.grad.const_data_ptr<scalar_t>() : nullptr;
  return args;
}

}  // namespace msrcnn::mask_pool_concat
