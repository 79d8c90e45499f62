#pragma once

// Host-side preparation shared by RoIAlign's CPU and CUDA entry points: argument checks,
// the level table, and the element-body arguments.

#include <ATen/core/Tensor.h>

#include <cmath>
#include <vector>

#include "ops/roi_align/roi_align_math.h"

namespace msrcnn::roi_align {

// Arguments common to the single- and multi-level ops.
struct RoIAlignParams {
  std::vector<double> spatial_scales;
  PoolParams pool;
  int64_t canonical_scale;
  int64_t canonical_level;
  bool multi_level;  // the multi-level op (its errors name feature maps and spatial_scales[i])
};

// Raises a clear error for anything the kernels cannot take. Devices are checked for
// agreement; the entry point checks that they are its own.
void check_forward_args(at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params, const char* op);

void check_backward_args(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const RoIAlignParams& params,
    int64_t batch_size,
    int64_t channels,
    at::IntArrayRef heights,
    at::IntArrayRef widths,
    const char* op);

inline RoIAlignParams make_params(
    std::vector<double> spatial_scales,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t canonical_scale,
    int64_t canonical_level) {
  return RoIAlignParams{
      std::move(spatial_scales), PoolParams{pooled_height, pooled_width, sampling_ratio, aligned}, canonical_scale,
      canonical_level, /*multi_level=*/true};
}

// The single-level op's: one map (its errors name input and spatial_scale), no level mapping.
inline RoIAlignParams single_level_params(
    double spatial_scale, int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  RoIAlignParams params = make_params({spatial_scale}, pooled_height, pooled_width, sampling_ratio, aligned, 224, 4);
  params.multi_level = false;
  return params;
}

// Coordinates and sums are computed in double for double features, float otherwise.
at::ScalarType accumulate_type(at::ScalarType feature_type);

// The level mapping of `params`: level count and range, canonical box, scales.
template <typename T>
LevelTable<T> make_level_mapping(const RoIAlignParams& params) {
  LevelTable<T> table{};
  table.count = static_cast<int>(params.spatial_scales.size());
  // torchvision: int(-log2(scale)) of the first and last map, log2 taken in float32.
  table.level_min = static_cast<int>(-std::log2(static_cast<float>(params.spatial_scales.front())));
  table.level_max = static_cast<int>(-std::log2(static_cast<float>(params.spatial_scales.back())));
  table.canonical_level = static_cast<int>(params.canonical_level);
  table.canonical_scale = static_cast<T>(params.canonical_scale);
  for (size_t i = 0; i < params.spatial_scales.size(); ++i) {
    table.scale[i] = static_cast<T>(params.spatial_scales[i]);
  }
  return table;
}

// The full level table of `maps` (features, or gradient buffers of their shapes).
template <typename T>
LevelTable<T> make_level_table(at::TensorList maps, const RoIAlignParams& params) {
  LevelTable<T> table = make_level_mapping<T>(params);
  table.batch = maps[0].size(0);
  table.channels = maps[0].size(1);
  for (size_t i = 0; i < maps.size(); ++i) {
    table.height[i] = maps[i].size(2);
    table.width[i] = maps[i].size(3);
    table.stride_n[i] = maps[i].stride(0);
    table.stride_c[i] = maps[i].stride(1);
    table.stride_h[i] = maps[i].stride(2);
    table.stride_w[i] = maps[i].stride(3);
  }
  return table;
}

template <typename scalar_t, typename T>
ForwardArgs<scalar_t, T> make_forward_args(
    at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params) {
  ForwardArgs<scalar_t, T> args{};
  args.levels = make_level_table<T>(features, params);
  for (size_t i = 0; i < features.size(); ++i) {
    args.features[i] = features[i].const_data_ptr<scalar_t>();
  }
  args.rois = rois.const_data_ptr<T>();
  args.pool = params.pool;
  return args;
}

template <typename grad_t, typename T>
BackwardArgs<grad_t, T> make_backward_args(
    const at::Tensor& grad, const at::Tensor& rois, at::TensorList grad_features, const RoIAlignParams& params) {
  BackwardArgs<grad_t, T> args{};
  args.levels = make_level_table<T>(grad_features, params);
  for (size_t i = 0; i < grad_features.size(); ++i) {
    args.grad_features[i] = grad_features[i].mutable_data_ptr<T>();
  }
  args.grad_output = grad.const_data_ptr<grad_t>();
  for (int d = 0; d < 4; ++d) {
    args.grad_stride[d] = grad.stride(d);
  }
  args.rois = rois.const_data_ptr<T>();
  args.pool = params.pool;
  return args;
}


// ---------------------------------------------------------------------------------------
// Each backend implements one forward and one backward over any number of levels; these
// adapters give them the four op schemas (roi_align.cpp).

using ForwardFn = at::Tensor (*)(at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params,
                                 const char* op);
using BackwardFn = std::vector<at::Tensor> (*)(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const RoIAlignParams& params,
    int64_t batch_size,
    int64_t channels,
    at::IntArrayRef heights,
    at::IntArrayRef widths,
    bool channels_last,
    const char* op);

template <ForwardFn forward>
at::Tensor roi_align_op(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned) {
  return forward(
      {input}, rois, single_level_params(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned),
      "msrcnn::roi_align");
}

template <BackwardFn backward>
at::Tensor roi_align_backward_op(
    const at::Tensor& grad,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    bool aligned,
    bool channels_last) {
  return backward(
      grad, rois, single_level_params(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned), batch_size,
      channels, {height}, {width}, channels_last, "msrcnn::_roi_align_backward")[0];
}

template <ForwardFn forward>
at::Tensor multi_level_roi_align_op(
    at::TensorList features,
    const at::Tensor& rois,
    at::ArrayRef<double> spatial_scales,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t canonical_scale,
    int64_t canonical_level) {
  return forward(
      features, rois,
      make_params(spatial_scales.vec(), pooled_height, pooled_width, sampling_ratio, aligned, canonical_scale,
                  canonical_level),
      "msrcnn::multi_level_roi_align");
}

template <BackwardFn backward>
std::vector<at::Tensor> multi_level_roi_align_backward_op(
    const at::Tensor& grad,
    const at::Tensor& rois,
    at::ArrayRef<double> spatial_scales,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t canonical_scale,
    int64_t canonical_level,
    int64_t batch_size,
    int64_t channels,
    at::IntArrayRef heights,
    at::IntArrayRef widths,
    bool channels_last) {
  return backward(
      grad, rois,
      make_params(spatial_scales.vec(), pooled_height, pooled_width, sampling_ratio, aligned, canonical_scale,
                  canonical_level),
      batch_size, channels, heights, widths, channels_last, "msrcnn::_multi_level_roi_align_backward");
}

}  // namespace msrcnn::roi_align
