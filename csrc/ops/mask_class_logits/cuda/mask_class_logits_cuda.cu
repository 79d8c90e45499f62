// mask_class_logits CUDA: the transposed convolution's product as one cuBLAS GEMM
// ([N * H * W, Cin] x [Cin, 4C], in the features' dtype, accumulated in float32 for half and
// bfloat16), then one thread per logit over mask_class_logits_math.h: ReLU(product + bias)
// dotted with the RoI's class weights. The [N, C, 2H, 2W] features are never written.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda/launch.cuh"
#include "ops/mask_class_logits/mask_class_logits_host.h"

namespace msrcnn::mask_class_logits {
namespace {

template <typename scalar_t, typename T>
__global__ void logits_cuda_kernel(int64_t n, Args<scalar_t, T> args, scalar_t* out) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    out[i] = static_cast<scalar_t>(logit_element(i, args));
  }
}

at::Tensor mask_class_logits_cuda(const at::Tensor& features, const at::Tensor& deconv_weight,
                                  const at::Tensor& deconv_bias, const at::Tensor& class_weight,
                                  const at::Tensor& class_bias) {
  const char* op = "msrcnn::mask_class_logits";
  check_args(features, deconv_weight, deconv_bias, class_weight, class_bias, op);
  check_device_type(features, c10::DeviceType::CUDA, op, "features");
  const c10::cuda::CUDAGuard guard(features.device());
  const int64_t height = features.size(2);
  const int64_t width = features.size(3);
  at::Tensor output = at::empty({features.size(0), 1, 2 * height, 2 * width}, features.options());
  const int64_t n = output.numel();
  if (n == 0) {
    return output;
  }
  const at::Tensor pre = at::mm(feature_rows(features), weight_columns(deconv_weight));
  const at::Tensor bias = deconv_bias.contiguous();
  const at::Tensor class_w = class_weight.contiguous();
  const at::Tensor class_b = class_bias.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "mask_class_logits_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto args = make_args<scalar_t, T>(pre, bias, class_w, class_b, height, width);
    logits_cuda_kernel<<<grid_size(n), kThreadsPerBlock, 0, stream>>>(n, args, output.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("mask_class_logits", &mask_class_logits_cuda);
}

}  // namespace msrcnn::mask_class_logits
