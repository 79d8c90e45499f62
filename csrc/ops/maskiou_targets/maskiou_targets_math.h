#pragma once

// maskiou_targets' per-element math: the ONLY copy, used by the CPU kernels, the CUDA
// kernels and the CPU element-by-element test build (docs/semantics.md, "MaskIoU target").
//
// Per positive RoI n of one image, matched to ground truth g = matched_idxs[n]:
//  * mask_target: ground-truth mask g cropped to the proposal and resized to M x M as
//    torchvision's project_masks_on_boxes does it: roi_align(gt_masks[:, None].float(),
//    rois, (M, M), spatial_scale=1, sampling_ratio=-1 (adaptive), aligned) -- a float target
//    in [0, 1] (the sampling grid and taps are roi_align_math.h's). Non-zero mask bytes are 1.
//  * binarised for the IoU at mask_target >= 0.5; the prediction at mask_logit > 0.
//  * area_ratio = (pixels of g inside the proposal) / (pixels of g), at image resolution. A
//    pixel (row r, column c) covers [c, c + 1) x [r, r + 1) and is inside the box when its
//    centre is: x1 <= c + 0.5 < x2 and y1 <= r + 0.5 < y2, i.e. c in
//    [ceil(x1 - 0.5), ceil(x2 - 0.5)) clamped to the image. An integer box (x1, x2) holds
//    exactly the x2 - x1 columns x1 .. x2 - 1. A ground truth of no pixels has ratio 0.
//    Counts come from summed-area tables: O(1) per box.
//  * full_area = target_sum / max(area_ratio, 1e-10); overlap = sum(pred * target);
//    union = max(pred_sum + full_area - overlap, 1); maskiou = max(overlap, 0) / union.

#include "common/macros.h"
#include "ops/roi_align/roi_align_math.h"

#include <math.h>
#include <stdint.h>

namespace msrcnn::maskiou_targets {

using roi_align::PoolParams;
using roi_align::RoIBins;

// The targets' threshold and the smallest area ratio (the authors' 1e-10).
template <typename T>
HOST_DEVICE_INLINE T target_threshold() {
  return static_cast<T>(0.5);
}
template <typename T>
HOST_DEVICE_INLINE T min_area_ratio() {
  return static_cast<T>(1e-10);
}

// One axis of roi_align's bilinear tap (roi_align::bilinear_tap is its product over the two
// axes): the two pixels a coordinate interpolates and their weights. `valid` is false for a
// coordinate outside [-1, size] (or NaN): the whole sample then contributes nothing.
template <typename T>
struct AxisTap {
  int64_t low;
  int64_t high;
  T weight_low;
  T weight_high;
  bool valid;
};

template <typename T>
HOST_DEVICE_INLINE AxisTap<T> axis_tap(T coord, int64_t size) {
  AxisTap<T> tap{0, 0, static_cast<T>(0), static_cast<T>(0), false};
  if (!(coord >= static_cast<T>(-1) && coord <= static_cast<T>(size)) || size <= 0) {
    return tap;
  }
  if (coord <= static_cast<T>(0)) {
    coord = 0;
  }
  tap.low = static_cast<int64_t>(coord);
  if (tap.low >= size - 1) {
    tap.high = tap.low = size - 1;
    coord = static_cast<T>(tap.low);
  } else {
    tap.high = tap.low + 1;
  }
  tap.weight_high = coord - static_cast<T>(tap.low);
  tap.weight_low = static_cast<T>(1) - tap.weight_high;
  tap.valid = true;
  return tap;
}

// Only the samples of a bin that land on the image are visited (roi_align::samples_on_axis,
// with axis_tap deciding each one): a huge proposal (up to roi_align::kMaxGrid samples per bin
// side) costs about the samples on the image, not its grid. The average still divides by the
// whole grid (roi_align::bin_divisor).
using roi_align::bin_divisor;
using roi_align::SampleRange;
using roi_align::samples_on_axis;

// roi_align's sampling grid of a proposal (x1, y1, x2, y2) at spatial scale 1.
template <typename T>
HOST_DEVICE_INLINE RoIBins<T> proposal_bins(const T* box, const PoolParams& pool) {
  const T roi[5] = {static_cast<T>(0), box[0], box[1], box[2], box[3]};
  return roi_align::roi_bins(roi, static_cast<T>(1), pool);
}

// Pixels [begin, end) of an axis of `size` pixels whose centres lie in [lo, hi).
struct PixelRange {
  int64_t begin;
  int64_t end;
};

template <typename T>
HOST_DEVICE_INLINE PixelRange pixels_inside(T lo, T hi, int64_t size) {
  if (!(lo == lo) || !(hi == hi)) {
    return PixelRange{0, 0};
  }
  T first = roi_align::math_ceil(lo - static_cast<T>(0.5));
  T last = roi_align::math_ceil(hi - static_cast<T>(0.5));
  const T limit = static_cast<T>(size);
  first = first < static_cast<T>(0) ? static_cast<T>(0) : (first > limit ? limit : first);
  last = last < first ? first : (last > limit ? limit : last);
  return PixelRange{static_cast<int64_t>(first), static_cast<int64_t>(last)};
}

// A summed-area table over rows [row0, row0 + rows) and columns [col0, col0 + cols) of one
// mask: table[(i + 1) * (cols + 1) + (j + 1)] = pixels of rows row0 .. row0 + i and columns
// col0 .. col0 + j; row 0 and column 0 of the table are zero. The region holds every
// pixel of the mask (the whole image, or the mask's bounding box).
struct SatRegion {
  int64_t row0;
  int64_t col0;
  int64_t rows;
  int64_t cols;
  const int32_t* table;
};

// Mask pixels in rows [y0, y1) x columns [x0, x1) of the image.
HOST_DEVICE_INLINE int64_t sat_box_sum(const SatRegion& s, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  // To region coordinates, clamped: pixels outside the region are zero.
  y0 = y0 - s.row0 < 0 ? 0 : (y0 - s.row0 > s.rows ? s.rows : y0 - s.row0);
  y1 = y1 - s.row0 < y0 ? y0 : (y1 - s.row0 > s.rows ? s.rows : y1 - s.row0);
  x0 = x0 - s.col0 < 0 ? 0 : (x0 - s.col0 > s.cols ? s.cols : x0 - s.col0);
  x1 = x1 - s.col0 < x0 ? x0 : (x1 - s.col0 > s.cols ? s.cols : x1 - s.col0);
  const int64_t stride = s.cols + 1;
  return static_cast<int64_t>(s.table[y1 * stride + x1]) - s.table[y0 * stride + x1] - s.table[y1 * stride + x0] +
      s.table[y0 * stride + x0];
}

HOST_DEVICE_INLINE int64_t sat_total(const SatRegion& s) {
  return s.table[s.rows * (s.cols + 1) + s.cols];
}

// area_ratio of a proposal on the table of its ground truth.
template <typename T>
HOST_DEVICE_INLINE T area_ratio(const T* box, const SatRegion& s, int64_t height, int64_t width) {
  const int64_t total = sat_total(s);
  if (total == 0) {
    return static_cast<T>(0);
  }
  const PixelRange cols = pixels_inside(box[0], box[2], width);
  const PixelRange rows = pixels_inside(box[1], box[3], height);
  return static_cast<T>(sat_box_sum(s, rows.begin, rows.end, cols.begin, cols.end)) / static_cast<T>(total);
}

// docs/semantics.md's formula from the RoI's sums over its M x M grid.
template <typename T>
HOST_DEVICE_INLINE T maskiou_from_sums(T overlap, T pred_sum, T target_sum, T ratio) {
  const T full_area = target_sum / (ratio > min_area_ratio<T>() ? ratio : min_area_ratio<T>());
  T union_area = pred_sum + full_area - overlap;
  union_area = union_area > static_cast<T>(1) ? union_area : static_cast<T>(1);
  return (overlap > static_cast<T>(0) ? overlap : static_cast<T>(0)) / union_area;
}

// ---------------------------------------------------------------------------------------
// Element bodies (one image), as functions of a flat index. The CUDA kernels run one thread
// per index; the CPU test build runs the same bodies in a loop. Tensors are contiguous.

template <typename T, typename logit_t>
struct ImageArgs {
  const uint8_t* masks;  // [G, H, W], bool or uint8, non-zero = foreground
  int64_t gts;
  int64_t height;
  int64_t width;
  const T* proposals;         // [N, 4] (x1, y1, x2, y2)
  const int64_t* matched;     // [N], in [0, G)
  const logit_t* logits;      // [N, M, M]
  int64_t rois;
  PoolParams pool;            // M x M, sampling_ratio -1, aligned
  int32_t* sat;               // [G, H + 1, W + 1]: whole-image tables
  T* mask_targets;            // [N, M, M]
  bool binary_mask_targets;   // store mask_targets >= 0.5 as 0 / 1
};

template <typename T, typename logit_t>
HOST_DEVICE_INLINE SatRegion image_sat(const ImageArgs<T, logit_t>& a, int64_t g) {
  return SatRegion{0, 0, a.height, a.width, a.sat + g * (a.height + 1) * (a.width + 1)};
}

// Table pass 1, index = g * H + r: running row sums of row r into table row r + 1, column 0 zero.
template <typename T, typename logit_t>
HOST_DEVICE_INLINE void sat_row_element(int64_t index, const ImageArgs<T, logit_t>& a) {
  const int64_t r = index % a.height;
  const int64_t g = index / a.height;
  const uint8_t* row = a.masks + (g * a.height + r) * a.width;
  int32_t* out = a.sat + (g * (a.height + 1) + r + 1) * (a.width + 1);
  int32_t running = 0;
  out[0] = 0;
  for (int64_t c = 0; c < a.width; ++c) {
    running += row[c] != 0;
    out[c + 1] = running;
  }
}

// Table pass 2, index = g * (W + 1) + c: column c summed down (after pass 1), row 0 zero.
template <typename T, typename logit_t>
HOST_DEVICE_INLINE void sat_column_element(int64_t index, const ImageArgs<T, logit_t>& a) {
  const int64_t c = index % (a.width + 1);
  const int64_t g = index / (a.width + 1);
  int32_t* table = a.sat + g * (a.height + 1) * (a.width + 1);
  table[c] = 0;
  int32_t running = 0;
  for (int64_t r = 1; r <= a.height; ++r) {
    running += table[r * (a.width + 1) + c];
    table[r * (a.width + 1) + c] = running;
  }
}

// mask_targets element, index = (n * M + ph) * M + pw: roi_align of the matched mask, every
// sample's four taps summed in torchvision's order.
template <typename T, typename logit_t>
HOST_DEVICE_INLINE T mask_target_element(int64_t index, const ImageArgs<T, logit_t>& a) {
  const int64_t pw = index % a.pool.pooled_width;
  const int64_t ph = (index / a.pool.pooled_width) % a.pool.pooled_height;
  const int64_t n = index / a.pool.pooled_width / a.pool.pooled_height;
  const T* box = a.proposals + n * 4;
  const RoIBins<T> bins = proposal_bins(box, a.pool);
  const uint8_t* plane = a.masks + a.matched[n] * a.height * a.width;
  // Only the samples on the image: the others add nothing (a huge proposal has up to
  // kMaxGrid^2 of them per bin).
  const SampleRange rows = samples_on_axis(bins.start_h, ph, bins.bin_h, bins.grid_h, a.height);
  const SampleRange cols = samples_on_axis(bins.start_w, pw, bins.bin_w, bins.grid_w, a.width);
  T sum = 0;
  for (int iy = rows.begin; iy < rows.end; ++iy) {
    const AxisTap<T> ty = axis_tap(roi_align::sample_coord(bins.start_h, ph, bins.bin_h, iy, bins.grid_h), a.height);
    for (int ix = cols.begin; ix < cols.end; ++ix) {
      const AxisTap<T> tx = axis_tap(roi_align::sample_coord(bins.start_w, pw, bins.bin_w, ix, bins.grid_w), a.width);
      if (ty.valid && tx.valid) {
        const T v1 = plane[ty.low * a.width + tx.low] != 0 ? static_cast<T>(1) : static_cast<T>(0);
        const T v2 = plane[ty.low * a.width + tx.high] != 0 ? static_cast<T>(1) : static_cast<T>(0);
        const T v3 = plane[ty.high * a.width + tx.low] != 0 ? static_cast<T>(1) : static_cast<T>(0);
        const T v4 = plane[ty.high * a.width + tx.high] != 0 ? static_cast<T>(1) : static_cast<T>(0);
        sum += ty.weight_low * tx.weight_low * v1 + ty.weight_low * tx.weight_high * v2 +
            ty.weight_high * tx.weight_low * v3 + ty.weight_high * tx.weight_high * v4;
      }
    }
  }
  return sum / bin_divisor(bins);
}

template <typename T>
HOST_DEVICE_INLINE T stored_target(T value, bool binary) {
  return binary ? (value >= target_threshold<T>() ? static_cast<T>(1) : static_cast<T>(0)) : value;
}

// maskiou of RoI n from its stored mask target, its logits and `sat` (its ground truth's table).
template <typename T, typename logit_t>
HOST_DEVICE_INLINE T maskiou_of_roi(int64_t n, const ImageArgs<T, logit_t>& a, const SatRegion& sat) {
  const int64_t cells = a.pool.pooled_height * a.pool.pooled_width;
  const T* target = a.mask_targets + n * cells;
  const logit_t* logits = a.logits + n * cells;
  int64_t overlap = 0;
  int64_t pred_sum = 0;
  int64_t target_sum = 0;
  for (int64_t i = 0; i < cells; ++i) {
    const bool pred = logits[i] > static_cast<logit_t>(0);  // in the logits' own type: no rounding to 0
    const bool positive = target[i] >= target_threshold<T>();
    overlap += pred && positive;
    pred_sum += pred;
    target_sum += positive;
  }
  return maskiou_from_sums(static_cast<T>(overlap), static_cast<T>(pred_sum), static_cast<T>(target_sum),
                           area_ratio(a.proposals + n * 4, sat, a.height, a.width));
}

// maskiou element, index = n, on the whole-image tables.
template <typename T, typename logit_t>
HOST_DEVICE_INLINE T maskiou_element(int64_t n, const ImageArgs<T, logit_t>& a) {
  return maskiou_of_roi(n, a, image_sat(a, a.matched[n]));
}

}  // namespace msrcnn::maskiou_targets
