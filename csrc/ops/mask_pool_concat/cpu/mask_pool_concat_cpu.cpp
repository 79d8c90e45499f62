// mask_pool_concat CPU entry points: checks, contiguous inputs, label range, buffers; the
// kernels are in mask_pool_concat_cpu_kernel.cpp (per CPU capability). Also the
// element-by-element test ops.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "common/large_tensors.h"
#include "ops/mask_pool_concat/cpu/mask_pool_concat_cpu_kernel.h"
#include "ops/mask_pool_concat/mask_pool_concat_host.h"

namespace msrcnn::mask_pool_concat {
namespace {

// Vectorised: the fast kernels. ByElement: the CUDA element bodies, one after another.
enum class Engine { Vectorised, ByElement };

// The kernels index mask_logits by the labels: reject any outside [0, K).
void check_label_values(const at::Tensor& labels, const Geometry& g, const char* op) {
  const int64_t* data = labels.const_data_ptr<int64_t>();
  for (int64_t n = 0; n < g.rois; ++n) {
    TORCH_CHECK_VALUE(
        data[n] >= 0 && data[n] < g.classes, op, ": labels[", n, "] = ", data[n],
        " is not a class of mask_logits (expected 0 <= label < ", g.classes, ")");
  }
}

Inputs cpu_inputs(
    const Geometry& g,
    const at::Tensor& logits,
    const std::optional<at::Tensor>& labels,
    const at::Tensor& features,
    const at::Tensor& grad,
    const char* op) {
  Inputs in = contiguous_inputs(g, logits, labels, features, grad, c10::DeviceType::CPU, op);
  if (in.labels.defined()) {
    check_label_values(in.labels, g, op);
  }
  return in;
}

// out.flat[i] = body(i, args) for every element, one after another.
template <typename Body>
void run_by_element(at::Tensor& out, const Geometry& g, const Inputs& in, Body body) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "mask_pool_concat_by_element", [&] {
    using T = at::opmath_type<scalar_t>;
    const Args<scalar_t> args = make_args<scalar_t>(g, in);
    scalar_t* data = out.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < out.numel(); ++i) {
      data[i] = static_cast<scalar_t>(body.template operator()<scalar_t, T>(i, args));
    }
  });
}

struct ForwardBody {
  template <typename scalar_t, typename T>
  T operator()(int64_t i, const Args<scalar_t>& a) const {
    return forward_element<scalar_t, T>(i, a);
  }
};
struct LogitsBackwardBody {
  template <typename scalar_t, typename T>
  T operator()(int64_t i, const Args<scalar_t>& a) const {
    return logits_backward_element<scalar_t, T>(i, a);
  }
};
struct MultiplyFeaturesBackwardBody {
  template <typename scalar_t, typename T>
  T operator()(int64_t i, const Args<scalar_t>& a) const {
    return multiply_features_backward_element<scalar_t, T>(i, a);
  }
};

template <Engine engine>
at::Tensor forward_cpu(
    const at::Tensor& roi_features,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    c10::string_view mode_name) {
  const char* op = "msrcnn::mask_pool_concat";
  const Geometry g = check_forward_args(roi_features, mask_logits, labels, parse_mode(mode_name, op), op);
  const Inputs in = cpu_inputs(g, mask_logits, labels, roi_features, at::Tensor(), op);
  at::Tensor output = empty_large({g.rois, output_channels(g), g.height, g.width}, roi_features.options());
  if (output.numel() == 0) {
    return output;
  }
  if (engine == Engine::ByElement) {
    run_by_element(output, g, in, ForwardBody{});
  } else {
    MSRCNN_CPU_DISPATCH_UP_TO_AVX2(::msrcnn::mask_pool_concat, forward_kernel, g, in, output);
  }
  return output;
}

template <Engine engine>
at::Tensor logits_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& roi_features,
    c10::string_view mode_name) {
  const char* op = "msrcnn::_mask_pool_concat_backward";
  const Mode mode = parse_mode(mode_name, op);
  const Geometry g = check_backward_args(grad, mask_logits, labels, roi_features, mode, op);
  const Inputs in = cpu_inputs(
      g, mask_logits, labels, mode == Mode::Multiply ? *roi_features : at::Tensor(), grad, op);
  at::Tensor grad_logits = empty_large(mask_logits.sizes(), mask_logits.options());
  if (grad_logits.numel() == 0) {
    return grad_logits;
  }
  if (engine == Engine::ByElement) {
    run_by_element(grad_logits, g, in, LogitsBackwardBody{});
  } else {
    MSRCNN_CPU_DISPATCH_UP_TO_AVX2(::msrcnn::mask_pool_concat, logits_backward_kernel, g, in, grad_logits);
  }
  return grad_logits;
}

template <Engine engine>
at::Tensor multiply_features_backward_cpu(
    const at::Tensor& grad, const at::Tensor& mask_logits, const std::optional<at::Tensor>& labels) {
  const char* op = "msrcnn::_mask_pool_multiply_features_backward";
  // The features themselves are not read: grad stands in for them in the checks.
  const Geometry g = check_backward_args(grad, mask_logits, labels, grad, Mode::Multiply, op);
  const Inputs in = cpu_inputs(g, mask_logits, labels, at::Tensor(), grad, op);
  at::Tensor grad_features = empty_large(grad.sizes(), grad.options());
  if (grad_features.numel() == 0) {
    return grad_features;
  }
  if (engine == Engine::ByElement) {
    run_by_element(grad_features, g, in, MultiplyFeaturesBackwardBody{});
  } else {
    MSRCNN_CPU_DISPATCH_UP_TO_AVX2(::msrcnn::mask_pool_concat, multiply_features_backward_kernel, g, in, grad_features);
  }
  return grad_features;
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("mask_pool_concat", &forward_cpu<Engine::Vectorised>);
  m.impl("_mask_pool_concat_backward", &logits_backward_cpu<Engine::Vectorised>);
  m.impl("_mask_pool_multiply_features_backward", &multiply_features_backward_cpu<Engine::Vectorised>);
}

TORCH_LIBRARY_IMPL(msrcnn_testing, CPU, m) {
  m.impl("mask_pool_concat_by_element", &forward_cpu<Engine::ByElement>);
  m.impl("mask_pool_concat_backward_by_element", &logits_backward_cpu<Engine::ByElement>);
  m.impl("mask_pool_multiply_features_backward_by_element", &multiply_features_backward_cpu<Engine::ByElement>);
}

}  // namespace msrcnn::mask_pool_concat
