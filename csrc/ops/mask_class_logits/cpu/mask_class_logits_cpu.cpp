// mask_class_logits CPU entry points: checks, the GEMM operands, the kernel (per CPU capability,
// mask_class_logits_cpu_kernel.cpp). Half computes in float32, as ATen's CPU convolutions
// accumulate it; bfloat16 takes the transposed convolution's GEMM in bfloat16 (ATen's, oneDNN's
// float32 accumulation where the CPU has it; the product rounded to bfloat16, as ATen's bfloat16
// conv_transpose2d rounds its output) and the rest in float32. The element-by-element test op
// computes all of it in float32.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "ops/mask_class_logits/cpu/mask_class_logits_cpu_kernel.h"
#include "ops/mask_class_logits/mask_class_logits_host.h"

namespace msrcnn::mask_class_logits {
namespace {

// Vectorised: the fast kernel. ByElement: the CUDA element body, one logit after another.
enum class Engine { Vectorised, ByElement };

at::Tensor in_compute_dtype(const at::Tensor& t) {
  const at::ScalarType dtype = t.scalar_type();
  return dtype == at::kHalf || dtype == at::kBFloat16 ? t.to(at::kFloat) : t;
}

template <Engine engine>
at::Tensor mask_class_logits_cpu(const at::Tensor& features, const at::Tensor& deconv_weight,
                                 const at::Tensor& deconv_bias, const at::Tensor& class_weight,
                                 const at::Tensor& class_bias) {
  const char* op = "msrcnn::mask_class_logits";
  check_args(features, deconv_weight, deconv_bias, class_weight, class_bias, op);
  check_device_type(features, c10::DeviceType::CPU, op, "features");
  const int64_t height = features.size(2);
  const int64_t width = features.size(3);
  const at::Tensor x = in_compute_dtype(features);
  at::Tensor output = at::empty({features.size(0), 1, 2 * height, 2 * width}, x.options());
  if (output.numel() > 0) {
    const bool bf16_gemm = engine == Engine::Vectorised && features.scalar_type() == at::kBFloat16;
    const at::Tensor rows = feature_rows(bf16_gemm ? features : x);
    const at::Tensor columns = weight_columns(bf16_gemm ? deconv_weight : in_compute_dtype(deconv_weight));
    const at::Tensor bias = in_compute_dtype(deconv_bias).contiguous();
    const at::Tensor class_w = in_compute_dtype(class_weight).contiguous();
    const at::Tensor class_b = in_compute_dtype(class_bias).contiguous();
    if (engine == Engine::ByElement) {
      const at::Tensor pre = at::mm(rows, columns);
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mask_class_logits_by_element", [&] {
        const auto args = make_args<scalar_t, scalar_t>(pre, bias, class_w, class_b, height, width);
        scalar_t* out = output.mutable_data_ptr<scalar_t>();
        for (int64_t i = 0; i < output.numel(); ++i) {
          out[i] = logit_element(i, args);
        }
      });
    } else {
      MSRCNN_CPU_DISPATCH(::msrcnn::mask_class_logits, logits_kernel, rows, columns, bias, class_w, class_b, height,
                          width, output);
    }
  }
  return output.to(features.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("mask_class_logits", &mask_class_logits_cpu<Engine::Vectorised>);
}

TORCH_LIBRARY_IMPL(msrcnn_testing, CPU, m) {
  m.impl("mask_class_logits_by_element", &mask_class_logits_cpu<Engine::ByElement>);
}

}  // namespace msrcnn::mask_class_logits
