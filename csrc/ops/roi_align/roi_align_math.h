#pragma once

// RoIAlign's per-element math: the ONLY copy, used by the CPU kernels, the CUDA kernels and
// the CPU element-by-element test build. Semantics are torchvision's roi_align (sampling
// grid, out-of-map samples, the aligned half-pixel offset, 1x1 minimum RoI when not
// aligned) and torchvision's MultiScaleRoIAlign level mapping (FPN paper, eq. 1).
//
// One "level" is one feature map [N, C, H, W] given by strides, so NCHW and NHWC layouts
// share every function here. A single-level op is the multi-level op with one level.

#include "common/macros.h"

#include <math.h>
#include <stdint.h>

namespace msrcnn::roi_align {

constexpr int kMaxLevels = 8;
// Bound on an adaptive sampling grid side (ceil(bin size) samples). Every grid torchvision
// defines (its grid side is an int) is kept exactly; a larger ceil() (a bin of over 2^31
// pixels: a diverged box) is clamped here. Only the samples on the map are visited (see
// samples_on_axis), so the grid's size costs nothing but the count it divides by.
constexpr int kMaxGrid = 2147483647;
// Bound on a fixed sampling_ratio (its square is the samples per bin, all visited when the
// bin is on the map): larger values are rejected by the op (roi_align_host.cpp).
constexpr int64_t kMaxSamplingRatio = 1024;

HOST_DEVICE_INLINE float math_sqrt(float x) { return sqrtf(x); }
HOST_DEVICE_INLINE double math_sqrt(double x) { return sqrt(x); }
HOST_DEVICE_INLINE float math_log2(float x) { return log2f(x); }
HOST_DEVICE_INLINE double math_log2(double x) { return log2(x); }
HOST_DEVICE_INLINE float math_floor(float x) { return floorf(x); }
HOST_DEVICE_INLINE double math_floor(double x) { return floor(x); }
HOST_DEVICE_INLINE float math_ceil(float x) { return ceilf(x); }
HOST_DEVICE_INLINE double math_ceil(double x) { return ceil(x); }

struct PoolParams {
  int64_t pooled_height;
  int64_t pooled_width;
  int64_t sampling_ratio;  // > 0: fixed grid per bin; otherwise ceil(roi size / pooled size)
  bool aligned;            // subtract half a pixel (the "aligned" RoIAlign)
};

// Shapes, strides and scales of the feature levels an op reads (forward) or writes
// gradients into (backward), plus the FPN level mapping.
template <typename T>
struct LevelTable {
  int count;
  int level_min;  // FPN level of the first map (torchvision's k_min)
  int level_max;  // FPN level of the last map (k_max)
  int canonical_level;
  T canonical_scale;
  int64_t batch;
  int64_t channels;
  int64_t height[kMaxLevels];
  int64_t width[kMaxLevels];
  int64_t stride_n[kMaxLevels];
  int64_t stride_c[kMaxLevels];
  int64_t stride_h[kMaxLevels];
  int64_t stride_w[kMaxLevels];
  T scale[kMaxLevels];
};

// Index (0-based) of the level a box (x1, y1, x2, y2, image coordinates) is pooled from, as
// torchvision's LevelMapper: floor(k0 + log2(sqrt(area) / s0) + 1e-6) clamped to
// [level_min, level_max]. -1 where that mapping selects no map: a NaN level (negative area)
// or an index past the maps given. A single map is always index 0.
template <typename T>
HOST_DEVICE_INLINE int level_of_box(const T* box, const LevelTable<T>& levels) {
  if (levels.count == 1) {
    return 0;
  }
  const T area = (box[2] - box[0]) * (box[3] - box[1]);
  const T scale = math_sqrt(area);
  T level = math_floor(
      static_cast<T>(levels.canonical_level) + math_log2(scale / levels.canonical_scale) + static_cast<T>(1e-6));
  if (!(level == level)) {
    return -1;
  }
  if (level < static_cast<T>(levels.level_min)) {
    level = static_cast<T>(levels.level_min);
  }
  if (level > static_cast<T>(levels.level_max)) {
    level = static_cast<T>(levels.level_max);
  }
  const int index = static_cast<int>(level) - levels.level_min;
  return index < levels.count ? index : -1;
}

// Batch index of a RoI (column 0), or -1 when it names no image of the batch.
template <typename T>
HOST_DEVICE_INLINE int64_t batch_of_roi(const T* roi, int64_t batch) {
  if (!(roi[0] >= static_cast<T>(0) && roi[0] < static_cast<T>(batch))) {
    return -1;
  }
  return static_cast<int64_t>(roi[0]);
}

// The sampling grid of one RoI on one level.
template <typename T>
struct RoIBins {
  T start_h;
  T start_w;
  T bin_h;
  T bin_w;
  int grid_h;  // samples per bin, vertically
  int grid_w;
};

template <typename T>
HOST_DEVICE_INLINE int adaptive_grid(T extent_per_bin) {
  if (!(extent_per_bin > static_cast<T>(0))) {
    return 0;
  }
  const T grid = math_ceil(extent_per_bin);
  return grid < static_cast<T>(kMaxGrid) ? static_cast<int>(grid) : kMaxGrid;
}

// roi = (batch, x1, y1, x2, y2) in image coordinates.
template <typename T>
HOST_DEVICE_INLINE RoIBins<T> roi_bins(const T* roi, T spatial_scale, const PoolParams& pool) {
  const T offset = pool.aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  RoIBins<T> bins;
  bins.start_w = roi[1] * spatial_scale - offset;
  bins.start_h = roi[2] * spatial_scale - offset;
  T roi_width = roi[3] * spatial_scale - offset - bins.start_w;
  T roi_height = roi[4] * spatial_scale - offset - bins.start_h;
  if (!pool.aligned) {
    // Malformed RoIs are forced to be 1x1 (torchvision).
    roi_width = roi_width > static_cast<T>(1) ? roi_width : static_cast<T>(1);
    roi_height = roi_height > static_cast<T>(1) ? roi_height : static_cast<T>(1);
  }
  bins.bin_h = roi_height / static_cast<T>(pool.pooled_height);
  bins.bin_w = roi_width / static_cast<T>(pool.pooled_width);
  bins.grid_h = pool.sampling_ratio > 0 ? static_cast<int>(pool.sampling_ratio)
                                        : adaptive_grid(roi_height / static_cast<T>(pool.pooled_height));
  bins.grid_w = pool.sampling_ratio > 0 ? static_cast<int>(pool.sampling_ratio)
                                        : adaptive_grid(roi_width / static_cast<T>(pool.pooled_width));
  return bins;
}

// Samples per bin, the divisor of the average: the whole grid, on the map or not (at least
// 1). In int64: grid_h * grid_w overflows int for big boxes.
template <typename T>
HOST_DEVICE_INLINE T bin_divisor(const RoIBins<T>& bins) {
  const int64_t count = static_cast<int64_t>(bins.grid_h) * static_cast<int64_t>(bins.grid_w);
  return static_cast<T>(count > 1 ? count : 1);
}

// Coordinate of sample i (of `grid`) in bin `bin`; the evaluation order is torchvision's.
// For bin_size >= 0 it never decreases with i, for bin_size < 0 it never increases (every
// step is a rounded operation monotone in i), so the samples on the map are a range.
template <typename T>
HOST_DEVICE_INLINE T sample_coord(T start, int64_t bin, T bin_size, int i, int grid) {
  return start + static_cast<T>(bin) * bin_size + static_cast<T>(i + .5f) * bin_size / static_cast<T>(grid);
}

// Whether a sample coordinate is on a map axis of `size` cells: in [-1, size] (NaN is not).
// A sample off the map on either axis contributes zero (but counts in the average).
template <typename T>
HOST_DEVICE_INLINE bool on_axis(T coord, int64_t size) {
  return coord >= static_cast<T>(-1) && coord <= static_cast<T>(size);
}

// Samples [begin, end) of one side of a bin.
struct SampleRange {
  int begin;
  int end;
};

// First i in [lo, hi) whose coordinate c satisfies (at_least ? c >= bound : c <= bound) ==
// want, for a predicate that is false then true along i; hi if none.
template <typename T>
HOST_DEVICE_INLINE int first_sample(
    T start, int64_t bin, T bin_size, int grid, T bound, bool at_least, bool want, int lo, int hi) {
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    const T c = sample_coord(start, bin, bin_size, mid, grid);
    if ((at_least ? c >= bound : c <= bound) == want) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// The samples of bin `bin` (of `grid` per side) that are on a map axis of `size` cells, plus
// one at each end: the only ones a bin needs to visit. An adaptive grid spaces samples
// (0.5, 1] pixel apart, so that is about 2 * (size + 2) whatever the box (plus what
// rounding merges at coordinates beyond 2^24). Found by binary search over the very
// coordinates and test the loops use, so rounding cannot split them; the first and last
// samples are tried first, for the usual bin wholly on the map.
template <typename T>
HOST_DEVICE_INLINE SampleRange samples_on_axis(T start, int64_t bin, T bin_size, int grid, int64_t size) {
  if (grid <= 0 || size <= 0) {
    return SampleRange{0, 0};
  }
  if (on_axis(sample_coord(start, bin, bin_size, 0, grid), size) &&
      on_axis(sample_coord(start, bin, bin_size, grid - 1, grid), size)) {
    return SampleRange{0, grid};
  }
  const T lower = static_cast<T>(-1);
  const T upper = static_cast<T>(size);
  // Rising coordinates: the range starts at the first c >= -1 and ends at the first c that
  // is not <= size; falling ones the other way round. NaN coordinates (all, or a suffix
  // after -inf / +inf ones) make the range empty.
  const bool rising = !(bin_size < static_cast<T>(0));
  const int begin = first_sample(start, bin, bin_size, grid, rising ? lower : upper, rising, true, 0, grid);
  const int end = first_sample(start, bin, bin_size, grid, rising ? upper : lower, !rising, false, begin, grid);
  // One more at each end, in case a caller's inlined copy of sample_coord rounds differently
  // (e.g. contracted to an FMA): its own on_axis test decides.
  return SampleRange{begin > 0 ? begin - 1 : 0, end < grid ? end + 1 : grid};
}

// One axis of a bilinear sample: the element offsets (index * stride) of the two cells it
// lies between, and their weights h (lower cell) and l = 1 - h (upper cell). Bilinear
// interpolation is separable: a sample's four taps are the products of its two axes'.
template <typename T>
struct AxisTap {
  int64_t low;
  int64_t high;
  T l;
  T h;
};

// Fills `tap` and returns true, or returns false for a coordinate outside [-1, size] (NaN
// too) or an empty axis: the sample contributes nothing.
template <typename T>
HOST_DEVICE_INLINE bool axis_tap(T coord, int64_t size, int64_t stride, AxisTap<T>& tap) {
  if (!on_axis(coord, size) || size <= 0) {
    return false;
  }
  if (coord <= static_cast<T>(0)) {
    coord = 0;
  }
  int64_t low = static_cast<int64_t>(coord);
  int64_t high;
  if (low >= size - 1) {
    high = low = size - 1;
    coord = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  tap.l = coord - static_cast<T>(low);
  tap.h = static_cast<T>(1) - tap.l;
  tap.low = low * stride;
  tap.high = high * stride;
  return true;
}

// Bilinear interpolation at one sample: four element offsets (y * stride_h + x * stride_w)
// and their weights.
template <typename T>
struct Tap {
  int64_t offset[4];
  T weight[4];
};

// Fills `tap` and returns true, or returns false for a sample outside [-1, size] on either
// axis (it contributes nothing; NaN coordinates land here too).
template <typename T>
HOST_DEVICE_INLINE bool bilinear_tap(
    T y, T x, int64_t height, int64_t width, int64_t stride_h, int64_t stride_w, Tap<T>& tap) {
  AxisTap<T> ty;
  AxisTap<T> tx;
  if (!(axis_tap(y, height, stride_h, ty) && axis_tap(x, width, stride_w, tx))) {
    return false;
  }
  tap.offset[0] = ty.low + tx.low;
  tap.offset[1] = ty.low + tx.high;
  tap.offset[2] = ty.high + tx.low;
  tap.offset[3] = ty.high + tx.high;
  tap.weight[0] = ty.h * tx.h;
  tap.weight[1] = ty.h * tx.l;
  tap.weight[2] = ty.l * tx.h;
  tap.weight[3] = ty.l * tx.l;
  return true;
}

// Calls visit(tap) for each sample of bin (ph, pw) that lands on level `level`'s map, in
// torchvision's order (rows, then columns), over the bin's samples_on_axis ranges ys and xs:
// the one sample loop of the element bodies and of the CPU kernels' tap tables.
template <typename T, typename Visit>
HOST_DEVICE_INLINE void for_each_tap(
    const RoIBins<T>& bins, int64_t ph, int64_t pw, SampleRange ys, SampleRange xs, const LevelTable<T>& lv,
    int level, Visit&& visit) {
  for (int iy = ys.begin; iy < ys.end; ++iy) {
    const T y = sample_coord(bins.start_h, ph, bins.bin_h, iy, bins.grid_h);
    for (int ix = xs.begin; ix < xs.end; ++ix) {
      const T x = sample_coord(bins.start_w, pw, bins.bin_w, ix, bins.grid_w);
      Tap<T> tap;
      if (bilinear_tap(y, x, lv.height[level], lv.width[level], lv.stride_h[level], lv.stride_w[level], tap)) {
        visit(tap);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Element bodies: one output element (forward) or one grad_output element (backward) per
// call, as a function of its flat index in [K, C, pooled_h, pooled_w]. The CUDA kernels
// run one thread per index; the CPU test build runs the same bodies in a loop.

template <typename scalar_t, typename T>
struct ForwardArgs {
  LevelTable<T> levels;
  const scalar_t* features[kMaxLevels];
  const T* rois;  // [K, 5], contiguous
  PoolParams pool;
};

template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T forward_element(int64_t index, const ForwardArgs<scalar_t, T>& args) {
  const int64_t pw = index % args.pool.pooled_width;
  const int64_t ph = (index / args.pool.pooled_width) % args.pool.pooled_height;
  const int64_t c = (index / args.pool.pooled_width / args.pool.pooled_height) % args.levels.channels;
  const int64_t k = index / args.pool.pooled_width / args.pool.pooled_height / args.levels.channels;
  const T* roi = args.rois + k * 5;
  const int level = level_of_box(roi + 1, args.levels);
  const int64_t batch = batch_of_roi(roi, args.levels.batch);
  if (level < 0 || batch < 0) {
    return static_cast<T>(0);
  }
  const LevelTable<T>& lv = args.levels;
  const RoIBins<T> bins = roi_bins(roi, lv.scale[level], args.pool);
  const scalar_t* plane = args.features[level] + batch * lv.stride_n[level] + c * lv.stride_c[level];
  const SampleRange ys = samples_on_axis(bins.start_h, ph, bins.bin_h, bins.grid_h, lv.height[level]);
  const SampleRange xs = samples_on_axis(bins.start_w, pw, bins.bin_w, bins.grid_w, lv.width[level]);
  T sum = 0;
  for_each_tap(bins, ph, pw, ys, xs, lv, level, [&](const Tap<T>& tap) {
    sum += tap.weight[0] * static_cast<T>(plane[tap.offset[0]]) + tap.weight[1] * static_cast<T>(plane[tap.offset[1]]) +
        tap.weight[2] * static_cast<T>(plane[tap.offset[2]]) + tap.weight[3] * static_cast<T>(plane[tap.offset[3]]);
  });
  return sum / bin_divisor(bins);
}

template <typename grad_t, typename T>
struct BackwardArgs {
  LevelTable<T> levels;  // geometry of the gradient buffers
  T* grad_features[kMaxLevels];
  const grad_t* grad_output;
  int64_t grad_stride[4];
  const T* rois;
  PoolParams pool;
};

// Adds this element's share into the gradient buffers through `add(T* address, T value)`
// (an atomic add on the GPU).
template <typename grad_t, typename T, typename Add>
HOST_DEVICE_INLINE void backward_element(int64_t index, const BackwardArgs<grad_t, T>& args, Add add) {
  const int64_t pw = index % args.pool.pooled_width;
  const int64_t ph = (index / args.pool.pooled_width) % args.pool.pooled_height;
  const int64_t c = (index / args.pool.pooled_width / args.pool.pooled_height) % args.levels.channels;
  const int64_t k = index / args.pool.pooled_width / args.pool.pooled_height / args.levels.channels;
  const T* roi = args.rois + k * 5;
  const int level = level_of_box(roi + 1, args.levels);
  const int64_t batch = batch_of_roi(roi, args.levels.batch);
  if (level < 0 || batch < 0) {
    return;
  }
  const LevelTable<T>& lv = args.levels;
  const RoIBins<T> bins = roi_bins(roi, lv.scale[level], args.pool);
  const SampleRange ys = samples_on_axis(bins.start_h, ph, bins.bin_h, bins.grid_h, lv.height[level]);
  const SampleRange xs = samples_on_axis(bins.start_w, pw, bins.bin_w, bins.grid_w, lv.width[level]);
  if (ys.begin == ys.end || xs.begin == xs.end) {
    return;
  }
  const T grad = static_cast<T>(args.grad_output[k * args.grad_stride[0] + c * args.grad_stride[1] +
                                                 ph * args.grad_stride[2] + pw * args.grad_stride[3]]) /
      bin_divisor(bins);
  T* plane = args.grad_features[level] + batch * lv.stride_n[level] + c * lv.stride_c[level];
  for_each_tap(bins, ph, pw, ys, xs, lv, level, [&](const Tap<T>& tap) {
    for (int t = 0; t < 4; ++t) {
      add(plane + tap.offset[t], grad * tap.weight[t]);
    }
  });
}

}  // namespace msrcnn::roi_align
