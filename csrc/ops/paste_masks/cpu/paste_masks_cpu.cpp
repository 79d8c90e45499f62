// paste_masks CPU entry points: checks, each mask's placement, the output; the kernel is in
// paste_masks_cpu_kernel.cpp (per CPU capability). Also the element-by-element test op.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "common/large_tensors.h"
#include "ops/paste_masks/cpu/paste_masks_cpu_kernel.h"
#include "ops/paste_masks/paste_masks_host.h"

namespace msrcnn::paste_masks {
namespace {

// Vectorised: the fast kernel. ByElement: the CUDA element body, one pixel after another.
enum class Engine { Vectorised, ByElement };

// Built without FMA (this file is not a *_kernel.cpp): the integer boxes round as
// torchvision's chain of tensor ops.
std::vector<PasteBox> placements_of(const at::Tensor& boxes, int64_t mask_size, const PasteParams& params) {
  std::vector<PasteBox> placements(boxes.size(0));
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "paste_masks_placements", [&] {
    const scalar_t* data = boxes.const_data_ptr<scalar_t>();
    for (int64_t n = 0; n < boxes.size(0); ++n) {
      placements[n] = paste_box(data + n * 4, mask_size, params.padding, params.height, params.width);
    }
  });
  return placements;
}

void paste_by_element(const at::Tensor& masks, const at::Tensor& boxes, const PasteParams& params, at::Tensor& out) {
  bool* data = out.mutable_data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, masks.scalar_type(), "paste_masks_by_element", [&] {
    using T = at::opmath_type<scalar_t>;
    using mask_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "paste_masks_by_element", [&] {
      const auto args = make_args<mask_t, T, scalar_t>(masks, boxes, params);
      for (int64_t i = 0; i < out.numel(); ++i) {
        data[i] = paste_element(i, args);
      }
    });
  });
}

template <Engine engine>
at::Tensor paste_masks_cpu(
    const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width, double threshold,
    int64_t padding) {
  const char* op = "msrcnn::paste_masks";
  const PasteParams params{height, width, threshold, padding};
  check_args(masks, boxes, params, op);
  check_device_type(masks, c10::DeviceType::CPU, op, "masks");
  const at::Tensor masks_c = masks.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  at::Tensor output = empty_large({masks.size(0), height, width}, masks.options().dtype(at::kBool));
  if (output.numel() == 0) {
    return output;
  }
  if (engine == Engine::ByElement) {
    paste_by_element(masks_c, boxes_c, params, output);
  } else {
    const std::vector<PasteBox> placements = placements_of(boxes_c, masks.size(3), params);
    MSRCNN_CPU_DISPATCH(::msrcnn::paste_masks, paste_kernel, masks_c, placements, params, output);
  }
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("paste_masks", &paste_masks_cpu<Engine::Vectorised>);
}

TORCH_LIBRARY_IMPL(msrcnn_testing, CPU, m) {
  m.impl("paste_masks_by_element", &paste_masks_cpu<Engine::ByElement>);
}

}  // namespace msrcnn::paste_masks
