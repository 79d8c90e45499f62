// RoIAlign CUDA kernels: one thread per output element (forward) or grad_output element
// (backward, atomic adds into float/double buffers), the bodies in roi_align_math.h.
// The multi-level op picks each RoI's level inside the kernel.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/checks.h"
#include "common/cuda/launch.cuh"
#include "ops/roi_align/roi_align_host.h"
#include "ops/roi_align/roi_align_math.h"

namespace msrcnn::roi_align {
namespace {

template <typename scalar_t, typename T>
__global__ void forward_cuda_kernel(int64_t n, ForwardArgs<scalar_t, T> args, scalar_t* output) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    output[i] = static_cast<scalar_t>(forward_element(i, args));
  }
}

struct AtomicAdd {
  template <typename T>
  __device__ void operator()(T* address, T value) const {
    gpuAtomicAdd(address, value);
  }
};

template <typename grad_t, typename T>
__global__ void backward_cuda_kernel(int64_t n, BackwardArgs<grad_t, T> args) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    backward_element(i, args, AtomicAdd{});
  }
}

at::Tensor forward_cuda(at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params, const char* op) {
  check_forward_args(features, rois, params, op);
  check_device_type(features[0], c10::DeviceType::CUDA, op, "input");
  const c10::cuda::CUDAGuard guard(features[0].device());
  const at::Tensor rois_acc = rois.to(accumulate_type(features[0].scalar_type())).contiguous();
  at::Tensor output = at::empty(
      {rois.size(0), features[0].size(1), params.pool.pooled_height, params.pool.pooled_width}, features[0].options());
  const int64_t n = output.numel();
  if (n == 0) {
    return output;
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "roi_align_forward_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto args = make_forward_args<scalar_t, T>(features, rois_acc, params);
    forward_cuda_kernel<scalar_t, T>
        <<<grid_size(n), kThreadsPerBlock, 0, stream>>>(n, args, output.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::vector<at::Tensor> backward_cuda(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const RoIAlignParams& params,
    int64_t batch_size,
    int64_t channels,
    at::IntArrayRef heights,
    at::IntArrayRef widths,
    bool channels_last,
    const char* op) {
  check_backward_args(grad, rois, params, batch_size, channels, heights, widths, op);
  check_device_type(grad, c10::DeviceType::CUDA, op, "grad");
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::ScalarType acc_type = accumulate_type(grad.scalar_type());
  const at::Tensor rois_acc = rois.to(acc_type).contiguous();
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  std::vector<at::Tensor> buffers;
  for (size_t i = 0; i < heights.size(); ++i) {
    buffers.push_back(
        at::empty({batch_size, channels, heights[i], widths[i]}, grad.options().dtype(acc_type), format).zero_());
  }
  const int64_t n = grad.numel();
  if (n > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      const auto args = make_backward_args<scalar_t, T>(grad, rois_acc, buffers, params);
      backward_cuda_kernel<scalar_t, T><<<grid_size(n), kThreadsPerBlock, 0, stream>>>(n, args);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (acc_type != grad.scalar_type()) {
    for (at::Tensor& buffer : buffers) {
      buffer = buffer.to(grad.scalar_type());
    }
  }
  return buffers;
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("roi_align", &roi_align_op<forward_cuda>);
  m.impl("_roi_align_backward", &roi_align_backward_op<backward_cuda>);
  m.impl("multi_level_roi_align", &multi_level_roi_align_op<forward_cuda>);
  m.impl("_multi_level_roi_align_backward", &multi_level_roi_align_backward_op<backward_cuda>);
}

}  // namespace msrcnn::roi_align
