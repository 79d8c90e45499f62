#pragma once

// RoIAlign's vectorised CPU kernels, compiled once per CPU capability (setup.py builds
// roi_align_cpu_kernel.cpp into namespaces DEFAULT, AVX2 and AVX512; MSRCNN_CPU_DISPATCH
// picks one).

#include <ATen/core/Tensor.h>

#include "ops/roi_align/roi_align_host.h"

namespace msrcnn::roi_align {

// Each level is read (or its gradient written) by the vectorised NHWC loops when its channels
// are contiguous (stride 1), else by the NCHW loops (any strides; NCHW-contiguous is fast).
// features: one dtype; rois: contiguous, in accumulate_type; output: [K, C, pooled_h,
// pooled_w] contiguous, every element written. grad_features: zero-filled buffers in
// accumulate_type, one per level, of the features' shapes. Backward is
// deterministic: each thread owns a channel range of one (level, image) and adds the RoIs
// in their input order. copy_layout: dst = src (any float dtypes), between the NCHW and
// NHWC layouts of one [N, C, H, W] shape (both dense).
#define MSRCNN_DECLARE_ROI_ALIGN_CPU_KERNELS(CAPABILITY)                                       \
  namespace CAPABILITY {                                                                     \
  void forward_kernel(                                                                       \
      at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params, at::Tensor& output); \
  void backward_kernel(                                                                      \
      const at::Tensor& grad, const at::Tensor& rois, const RoIAlignParams& params,                  \
      at::TensorList grad_features);                                                         \
  void copy_layout(const at::Tensor& src, at::Tensor& dst);                                  \
  }

MSRCNN_DECLARE_ROI_ALIGN_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_ROI_ALIGN_CPU_KERNELS(AVX2)
MSRCNN_DECLARE_ROI_ALIGN_CPU_KERNELS(AVX512)

#undef MSRCNN_DECLARE_ROI_ALIGN_CPU_KERNELS

}  // namespace msrcnn::roi_align
