// maskiou_targets CPU kernels over maskiou_targets_math.h. Compiled once per CPU capability:
// CPU_CAPABILITY is DEFAULT, AVX2 or AVX512 (see setup.py); the plain loops below are written
// for the compiler to vectorise (byte compares, widening, float FMAs).
//
// Pass 1, parallel over the matched ground truths: one read of the mask finds its bounding
// box and area; a summed-area table is built over the bounding box only (a COCO instance
// covers a small part of the image, and pixels outside it are zero).
// Pass 2, parallel over RoIs: the area ratio from the table (O(1)); the mask target by
// roi_align's samples, separated by axis: bilinear interpolation is the product of two axis
// taps, so each output bin's value is sum_r sum_c wy[r] wx[c] mask[r][c] with wy (wx) the
// summed axis weights of the bin's samples. Rows and columns outside the bounding box are
// skipped (they are zero). One pass over the box's rows per output row, vectorised over
// columns, instead of four taps per sample (the same sum, rounded in another order); then
// the IoU from the 28x28 target and logits.

#include "ops/maskiou_targets/cpu/maskiou_targets_cpu_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace msrcnn::maskiou_targets::CPU_CAPABILITY {
namespace {

// A ground truth's summed-area table over its bounding box (no rows: an empty mask).
struct GtTable {
  int64_t row0 = 0;
  int64_t col0 = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int32_t> table{0};

  SatRegion region() const {
    return SatRegion{row0, col0, rows, cols, table.data()};
  }
};

// Byte-wide OR reduction: 32 pixels per AVX2 instruction, no widening.
bool any_nonzero(const uint8_t* row, int64_t width) {
  uint8_t any = 0;
  for (int64_t c = 0; c < width; ++c) {
    any |= row[c];
  }
  return any != 0;
}

void or_into(const uint8_t* row, int64_t width, uint8_t* any) {
  for (int64_t c = 0; c < width; ++c) {
    any[c] |= row[c];
  }
}

void build_table(const uint8_t* plane, int64_t height, int64_t width, std::vector<uint8_t>& column_any, GtTable& t) {
  int64_t first_row = height;
  int64_t last_row = -1;
  std::fill(column_any.begin(), column_any.end(), 0);
  for (int64_t r = 0; r < height; ++r) {
    const uint8_t* row = plane + r * width;
    if (any_nonzero(row, width)) {
      first_row = std::min(first_row, r);
      last_row = r;
      or_into(row, width, column_any.data());
    }
  }
  if (last_row < 0) {
    t = GtTable{};
    return;
  }
  int64_t first_col = 0;
  while (column_any[first_col] == 0) {
    ++first_col;
  }
  int64_t last_col = width - 1;
  while (column_any[last_col] == 0) {
    --last_col;
  }
  t.row0 = first_row;
  t.col0 = first_col;
  t.rows = last_row - first_row + 1;
  t.cols = last_col - first_col + 1;
  const int64_t stride = t.cols + 1;
  t.table.assign((t.rows + 1) * stride, 0);
  for (int64_t i = 0; i < t.rows; ++i) {
    const uint8_t* src = plane + (t.row0 + i) * width + t.col0;
    const int32_t* above = t.table.data() + i * stride;
    int32_t* out = t.table.data() + (i + 1) * stride;
    int32_t running = 0;
    for (int64_t j = 0; j < t.cols; ++j) {
      running += src[j] != 0;
      out[j + 1] = above[j + 1] + running;
    }
  }
}

// The summed axis-tap weights of every output bin along one axis: bin b weighs pixels
// [begin[b], end[b]) by weights[offset[b] + (pixel - begin[b])].
template <typename T>
struct AxisWeights {
  std::vector<int64_t> begin;
  std::vector<int64_t> end;
  std::vector<int64_t> offset;
  std::vector<T> weights;

  void build(T start, T bin_size, int grid, int64_t bins, int64_t size) {
    begin.assign(bins, 0);
    end.assign(bins, 0);
    offset.assign(bins, 0);
    weights.clear();
    for (int64_t b = 0; b < bins; ++b) {
      int64_t lo = std::numeric_limits<int64_t>::max();
      int64_t hi = -1;
      const SampleRange on_axis = samples_on_axis(start, b, bin_size, grid, size);
      for (int i = on_axis.begin; i < on_axis.end; ++i) {
        const AxisTap<T> tap = axis_tap(roi_align::sample_coord(start, b, bin_size, i, grid), size);
        if (tap.valid) {
          lo = std::min(lo, tap.low);
          hi = std::max(hi, tap.high);
        }
      }
      offset[b] = static_cast<int64_t>(weights.size());
      if (hi < lo) {
        continue;
      }
      begin[b] = lo;
      end[b] = hi + 1;
      weights.resize(weights.size() + (hi + 1 - lo), static_cast<T>(0));
      T* w = weights.data() + offset[b] - lo;
      for (int i = on_axis.begin; i < on_axis.end; ++i) {
        const AxisTap<T> tap = axis_tap(roi_align::sample_coord(start, b, bin_size, i, grid), size);
        if (tap.valid) {
          w[tap.low] += tap.weight_low;
          w[tap.high] += tap.weight_high;
        }
      }
    }
  }
};

// acc[c] += weight where row[c] is foreground.
template <typename T>
void add_weighted_row(T weight, const uint8_t* row, int64_t count, T* acc) {
  for (int64_t c = 0; c < count; ++c) {
    acc[c] += row[c] != 0 ? weight : static_cast<T>(0);
  }
}

template <typename T>
struct Scratch {
  AxisWeights<T> rows;
  AxisWeights<T> cols;
  std::vector<T> partial;  // one output row's weighted column sums
};

// mask_targets[n] of one RoI: roi_align of its ground truth, separated by axis.
template <typename T, typename logit_t>
void mask_target_roi(const ImageArgs<T, logit_t>& a, int64_t n, const GtTable& gt, Scratch<T>& s) {
  const int64_t out_h = a.pool.pooled_height;
  const int64_t out_w = a.pool.pooled_width;
  T* out = a.mask_targets + n * out_h * out_w;
  std::fill(out, out + out_h * out_w, static_cast<T>(0));
  const RoIBins<T> bins = proposal_bins(a.proposals + n * 4, a.pool);
  if (gt.rows == 0 || bins.grid_h <= 0 || bins.grid_w <= 0) {
    return;
  }
  s.rows.build(bins.start_h, bins.bin_h, bins.grid_h, out_h, a.height);
  s.cols.build(bins.start_w, bins.bin_w, bins.grid_w, out_w, a.width);
  // Columns any bin reads, within the ground truth's bounding box.
  int64_t col_lo = gt.col0 + gt.cols;
  int64_t col_hi = gt.col0;
  for (int64_t pw = 0; pw < out_w; ++pw) {
    if (s.cols.end[pw] > s.cols.begin[pw]) {
      col_lo = std::min(col_lo, std::max(s.cols.begin[pw], gt.col0));
      col_hi = std::max(col_hi, std::min(s.cols.end[pw], gt.col0 + gt.cols));
    }
  }
  if (col_hi <= col_lo) {
    return;
  }
  const int64_t span = col_hi - col_lo;
  s.partial.resize(span);
  const T divisor = bin_divisor(bins);
  const uint8_t* plane = a.masks + a.matched[n] * a.height * a.width;
  for (int64_t ph = 0; ph < out_h; ++ph) {
    const int64_t row_lo = std::max(s.rows.begin[ph], gt.row0);
    const int64_t row_hi = std::min(s.rows.end[ph], gt.row0 + gt.rows);
    if (row_hi <= row_lo) {
      continue;
    }
    std::fill(s.partial.begin(), s.partial.end(), static_cast<T>(0));
    const T* wy = s.rows.weights.data() + s.rows.offset[ph] - s.rows.begin[ph];
    for (int64_t r = row_lo; r < row_hi; ++r) {
      add_weighted_row(wy[r], plane + r * a.width + col_lo, span, s.partial.data());
    }
    for (int64_t pw = 0; pw < out_w; ++pw) {
      const int64_t lo = std::max(s.cols.begin[pw], col_lo);
      const int64_t hi = std::min(s.cols.end[pw], col_hi);
      const T* wx = s.cols.weights.data() + s.cols.offset[pw] - s.cols.begin[pw];
      T sum = 0;
      for (int64_t c = lo; c < hi; ++c) {
        sum += wx[c] * s.partial[c - col_lo];
      }
      out[ph * out_w + pw] = stored_target(sum / divisor, a.binary_mask_targets);
    }
  }
}

template <typename T, typename logit_t>
void image_typed(const Image& image, const at::Tensor& logits, bool aligned, bool binary, at::Tensor& mask_targets,
                 at::Tensor& maskiou) {
  const ImageArgs<T, logit_t> a = make_image_args<T, logit_t>(image, logits, mask_targets, nullptr, aligned, binary);
  if (a.rois == 0) {
    return;
  }
  T* iou = maskiou.mutable_data_ptr<T>() + image.first_roi;
  std::vector<uint8_t> matched(a.gts, 0);
  for (int64_t n = 0; n < a.rois; ++n) {
    matched[a.matched[n]] = 1;
  }
  std::vector<GtTable> tables(a.gts);
  at::parallel_for(0, a.gts, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> column_any(a.width);
    for (int64_t g = begin; g < end; ++g) {
      if (matched[g]) {
        build_table(a.masks + g * a.height * a.width, a.height, a.width, column_any, tables[g]);
      }
    }
  });
  at::parallel_for(0, a.rois, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> scratch;
    for (int64_t n = begin; n < end; ++n) {
      const GtTable& gt = tables[a.matched[n]];
      mask_target_roi(a, n, gt, scratch);
      iou[n] = maskiou_of_roi(n, a, gt.region());
    }
  });
}

}  // namespace

void image_kernel(const Image& image, const at::Tensor& mask_logits, bool aligned, bool binary_mask_targets,
                  at::Tensor& mask_targets, at::Tensor& maskiou) {
  AT_DISPATCH_FLOATING_TYPES(mask_targets.scalar_type(), "maskiou_targets_cpu", [&] {
    using T = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mask_logits.scalar_type(), "maskiou_targets_cpu", [&] {
      image_typed<T, scalar_t>(image, mask_logits, aligned, binary_mask_targets, mask_targets, maskiou);
    });
  });
}

}  // namespace msrcnn::maskiou_targets::CPU_CAPABILITY
