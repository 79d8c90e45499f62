// paste_masks CUDA kernel: one thread per output pixel, the body in paste_masks_math.h (box
// geometry with un-fused arithmetic, common/exact_math.h, so the integer boxes round as
// torchvision's tensor ops).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda/launch.cuh"
#include "ops/paste_masks/paste_masks_host.h"
#include "ops/paste_masks/paste_masks_math.h"

namespace msrcnn::paste_masks {
namespace {

template <typename scalar_t, typename T, typename box_t>
__global__ void paste_cuda_kernel(int64_t n, Args<scalar_t, T, box_t> args, bool* out) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    out[i] = paste_element(i, args);
  }
}

at::Tensor paste_masks_cuda(
    const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width, double threshold,
    int64_t padding) {
  const char* op = "msrcnn::paste_masks";
  const PasteParams params{height, width, threshold, padding};
  check_args(masks, boxes, params, op);
  check_device_type(masks, c10::DeviceType::CUDA, op, "masks");
  const c10::cuda::CUDAGuard guard(masks.device());
  const at::Tensor masks_c = masks.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  at::Tensor output = at::empty({masks.size(0), height, width}, masks.options().dtype(at::kBool));
  const int64_t n = output.numel();
  if (n == 0) {
    return output;
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, masks.scalar_type(), "paste_masks_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    using mask_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "paste_masks_cuda", [&] {
      const auto args = make_args<mask_t, T, scalar_t>(masks_c, boxes_c, params);
      paste_cuda_kernel<<<grid_size(n), kThreadsPerBlock, 0, stream>>>(n, args, output.mutable_data_ptr<bool>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("paste_masks", &paste_masks_cuda);
}

}  // namespace msrcnn::paste_masks
