// mask_pool_concat CUDA kernels: one thread per output element (forward, gradient of the
// multiply mode's features) or per grad_mask_logits element (no atomics, no zero fill: each
// thread writes its element, zero or not), the bodies in mask_pool_concat_math.h.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <optional>

#include "common/checks.h"
#include "common/cuda/launch.cuh"
#include "ops/mask_pool_concat/mask_pool_concat_host.h"
#include "ops/mask_pool_concat/mask_pool_concat_math.h"

namespace msrcnn::mask_pool_concat {
namespace {

enum class Body { Forward, LogitsBackward, MultiplyFeaturesBackward };

template <Body body, typename scalar_t, typename T>
__global__ void element_kernel(int64_t n, Args<scalar_t> args, scalar_t* out) {
  const Geometry& g = args.geometry;
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    if (body == Body::Forward) {
      out[i] = static_cast<scalar_t>(forward_element<scalar_t, T>(i, args));
    } else if (body == Body::LogitsBackward) {
      out[i] = static_cast<scalar_t>(logits_backward_element<scalar_t, T>(i, args));
    } else {
      out[i] = static_cast<scalar_t>(multiply_features_backward_element<scalar_t, T>(i, args));
    }
  }
  // Labels are validated here, where they are read (a host check would need a sync).
  if (g.mode != Mode::ConcatAll && g.classes > 1) {
    for (int64_t r = first_index(); r < g.rois; r += index_stride()) {
      CUDA_KERNEL_ASSERT(selected_class(args.labels, r, g.classes) >= 0 && "mask_pool_concat: label out of range");
    }
  }
}

template <Body body>
void launch(const Geometry& g, const Inputs& in, at::Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) {
    return;
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "mask_pool_concat_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    element_kernel<body, scalar_t, T><<<grid_size(n), kThreadsPerBlock, 0, stream>>>(
        n, make_args<scalar_t>(g, in), out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}


at::Tensor forward_cuda(
    const at::Tensor& roi_features,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    c10::string_view mode_name) {
  const char* op = "msrcnn::mask_pool_concat";
  const Geometry g = check_forward_args(roi_features, mask_logits, labels, parse_mode(mode_name, op), op);
  const c10::cuda::CUDAGuard guard(mask_logits.device());
  const Inputs in = contiguous_inputs(g, mask_logits, labels, roi_features, at::Tensor(), c10::DeviceType::CUDA, op);
  at::Tensor output = at::empty({g.rois, output_channels(g), g.height, g.width}, roi_features.options());
  launch<Body::Forward>(g, in, output);
  return output;
}

at::Tensor logits_backward_cuda(
    const at::Tensor& grad,
    const at::Tensor& mask_logits,
    const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& roi_features,
    c10::string_view mode_name) {
  const char* op = "msrcnn::_mask_pool_concat_backward";
  const Mode mode = parse_mode(mode_name, op);
  const Geometry g = check_backward_args(grad, mask_logits, labels, roi_features, mode, op);
  const c10::cuda::CUDAGuard guard(mask_logits.device());
  const at::Tensor features = mode == Mode::Multiply ? *roi_features : at::Tensor();
  const Inputs in = contiguous_inputs(g, mask_logits, labels, features, grad, c10::DeviceType::CUDA, op);
  at::Tensor grad_logits = at::empty(mask_logits.sizes(), mask_logits.options());
  launch<Body::LogitsBackward>(g, in, grad_logits);
  return grad_logits;
}

at::Tensor multiply_features_backward_cuda(
    const at::Tensor& grad, const at::Tensor& mask_logits, const std::optional<at::Tensor>& labels) {
  const char* op = "msrcnn::_mask_pool_multiply_features_backward";
  const Geometry g = check_backward_args(grad, mask_logits, labels, grad, Mode::Multiply, op);
  const c10::cuda::CUDAGuard guard(mask_logits.device());
  const Inputs in = contiguous_inputs(g, mask_logits, labels, at::Tensor(), grad, c10::DeviceType::CUDA, op);
  at::Tensor grad_features = at::empty(grad.sizes(), grad.options());
  launch<Body::MultiplyFeaturesBackward>(g, in, grad_features);
  return grad_features;
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("mask_pool_concat", &forward_cuda);
  m.impl("_mask_pool_concat_backward", &logits_backward_cuda);
  m.impl("_mask_pool_multiply_features_backward", &multiply_features_backward_cuda);
}

}  // namespace msrcnn::mask_pool_concat
