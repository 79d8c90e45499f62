// RoIAlign CPU kernels over roi_align_math.h. Compiled once per CPU capability: CPU_CAPABILITY
// is DEFAULT, AVX2 or AVX512 (see setup.py), and at::vec::Vectorized follows it.
//
// Forward, NHWC features: parallel over RoIs; each RoI's bilinear taps are computed once and
// reused across channels, and every tap is a contiguous run of C values, so the loop over
// channels is vectorised. NCHW features: parallel over (channel, RoI), channel-major, with
// each RoI's separable row and column taps (forward_nchw).
// Backward: parallel over (level, image, channel range) units, each owning its slice of the
// gradient, so there are no races and no atomics and the result does not depend on the
// thread count.

#include "ops/roi_align/cpu/roi_align_cpu_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace msrcnn::roi_align::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Channels per backward work unit are a multiple of this (whole vectors).
constexpr int64_t kChannelQuantum = 16;

// Loads Vectorized<T>::size() consecutive values of type scalar_t as T.
template <typename scalar_t, typename T>
inline Vectorized<T> load_as(const scalar_t* data) {
  if constexpr (std::is_same_v<scalar_t, T>) {
    return Vectorized<T>::loadu(data);
  } else {
    Vectorized<float> out;
    at::vec::load_to_float(data, out);
    return out;
  }
}

// Taps one table holds before it stops taking bins (it takes at least one): bounds a
// thread's memory (3 MB in float) whatever the grid and output size. A RoI needs more than
// one table only past this many taps (a usual RoI has a few hundred to a few thousand).
constexpr size_t kMaxTapsPerTable = size_t{1} << 16;

// The bilinear taps of one RoI on its level, computed once and reused across channels, in
// tables of consecutive bins (usually one table for all). Only the samples on the map are
// visited (samples_on_axis), so a huge box costs about what a box the size of the map does.
template <typename T>
struct RoITaps {
  RoIBins<T> bins{};
  T divisor = 1;                     // of each bin's sum: grid_h * grid_w, at least 1
  std::vector<SampleRange> columns;  // the samples to visit in each bin column (pw)
  int64_t first_bin = 0;             // this table: bins [first_bin, end_bin), flat (ph, pw)
  int64_t end_bin = 0;
  std::vector<Tap<T>> taps;
  std::vector<int64_t> bin_begin;  // taps of bin first_bin + i: [bin_begin[i], bin_begin[i + 1])

  // Sets up the RoI: its grid and the samples of each column; next() then builds the tables.
  void start(const T* roi, int level, const LevelTable<T>& lv, const PoolParams& pool) {
    bins = roi_bins(roi, lv.scale[level], pool);
    divisor = bin_divisor(bins);
    columns.resize(pool.pooled_width);
    for (int64_t pw = 0; pw < pool.pooled_width; ++pw) {
      columns[pw] = samples_on_axis(bins.start_w, pw, bins.bin_w, bins.grid_w, lv.width[level]);
    }
    end_bin = 0;
  }

  // The table of the next bins; false when every bin has been in one.
  bool next(int level, const LevelTable<T>& lv, const PoolParams& pool) {
    const int64_t num_bins = pool.pooled_height * pool.pooled_width;
    if (end_bin >= num_bins) {
      return false;
    }
    first_bin = end_bin;
    taps.clear();
    bin_begin.clear();
    int64_t ph = first_bin / pool.pooled_width;
    int64_t pw = first_bin % pool.pooled_width;
    SampleRange ys = samples_on_axis(bins.start_h, ph, bins.bin_h, bins.grid_h, lv.height[level]);
    int64_t bin = first_bin;
    for (; bin < num_bins && (bin == first_bin || taps.size() < kMaxTapsPerTable); ++bin) {
      if (pw == pool.pooled_width) {
        pw = 0;
        ++ph;
        ys = samples_on_axis(bins.start_h, ph, bins.bin_h, bins.grid_h, lv.height[level]);
      }
      bin_begin.push_back(static_cast<int64_t>(taps.size()));
      for_each_tap(bins, ph, pw, ys, columns[pw], lv, level, [&](const Tap<T>& tap) { taps.push_back(tap); });
      ++pw;
    }
    bin_begin.push_back(static_cast<int64_t>(taps.size()));
    end_bin = bin;
    return true;
  }

  // Taps [bin_taps(b), bin_taps_end(b)) of bin b of this table.
  const Tap<T>* bin_taps(int64_t b) const { return taps.data() + bin_begin[b - first_bin]; }
  const Tap<T>* bin_taps_end(int64_t b) const { return taps.data() + bin_begin[b - first_bin + 1]; }
};

// Accumulates the taps [first, last) of one bin for the channel vectors starting at `c`.
template <int kVectors, typename scalar_t, typename T>
inline void accumulate_taps(const Tap<T>* first, const Tap<T>* last, const scalar_t* base, int64_t c,
                            Vectorized<T>* acc) {
  constexpr int64_t V = Vectorized<T>::size();
  for (int i = 0; i < kVectors; ++i) {
    acc[i] = Vectorized<T>(static_cast<T>(0));
  }
  for (const Tap<T>* tap = first; tap != last; ++tap) {
    for (int corner = 0; corner < 4; ++corner) {
      const Vectorized<T> w(tap->weight[corner]);
      const scalar_t* src = base + tap->offset[corner] + c;
      for (int i = 0; i < kVectors; ++i) {
        acc[i] = at::vec::fmadd(w, load_as<scalar_t, T>(src + i * V), acc[i]);
      }
    }
  }
}

// dst[j * stride] = lanes[j] for j < N: one bin's channels into the NCHW output. A function of
// its own, so its pointer stays in a register: inlined into forward_roi_nhwc's loop, GCC kept
// the running output pointer on the stack, a store-to-load chain per channel that took ~45 %
// of the AVX512 build's channels-last forward.
template <int64_t N, typename T, typename scalar_t>
__attribute__((noinline)) void scatter_channels(const T* lanes, scalar_t* dst, int64_t stride) {
  for (int64_t j = 0; j < N; ++j) {
    dst[j * stride] = static_cast<scalar_t>(lanes[j]);
  }
}

// One table of one RoI, NHWC features: vectorised over channels; the result is stored NCHW.
template <typename scalar_t, typename T>
void forward_roi_nhwc(const RoITaps<T>& rt, const scalar_t* base, const LevelTable<T>& lv, int64_t num_bins,
                      scalar_t* out_k) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  constexpr int kBlock = 4;
  const int64_t C = lv.channels;
  const T divisor = rt.divisor;
  const Vec vdivisor(divisor);
  alignas(64) T lanes[kBlock * V];
  for (int64_t b = rt.first_bin; b < rt.end_bin; ++b) {
    const Tap<T>* first = rt.bin_taps(b);
    const Tap<T>* last = rt.bin_taps_end(b);
    int64_t c = 0;
    Vec acc[kBlock];
    for (; c + kBlock * V <= C; c += kBlock * V) {
      accumulate_taps<kBlock>(first, last, base, c, acc);
      for (int i = 0; i < kBlock; ++i) {
        (acc[i] / vdivisor).store(lanes + i * V);
      }
      scatter_channels<kBlock * V>(lanes, out_k + c * num_bins + b, num_bins);
    }
    for (; c + V <= C; c += V) {
      accumulate_taps<1>(first, last, base, c, acc);
      (acc[0] / vdivisor).store(lanes);
      scatter_channels<V>(lanes, out_k + c * num_bins + b, num_bins);
    }
    for (; c < C; ++c) {
      T sum = 0;
      for (const Tap<T>* tap = first; tap != last; ++tap) {
        for (int corner = 0; corner < 4; ++corner) {
          sum += tap->weight[corner] * static_cast<T>(base[tap->offset[corner] + c]);
        }
      }
      out_k[c * num_bins + b] = static_cast<scalar_t>(sum / divisor);
    }
  }
}

// A level is read (or written) by the NHWC loops when its channels are contiguous.
template <typename T>
bool is_nhwc(const LevelTable<T>& lv, int level) {
  return lv.stride_c[level] == 1 && lv.channels > 1;
}

// NCHW levels, forward: channel-major. A RoI's samples are separable (rows x columns), so its
// tables are one list of row taps and one of column taps per bin, not a tap per sample; the
// tables of many RoIs fit in L2, and each (image, channel) plane is read by every RoI in
// turn while it is in cache. (RoI-major, every RoI walked all channel planes of the map: 2-4
// ns per sample and channel on a 2-core AVX2 EPYC, 256 channels of 200x272, against ~0.5 here.)
template <typename T>
struct AxisTables {
  std::vector<AxisTap<T>> taps;
  std::vector<int64_t> rows;     // RoI r, bin row ph: taps [rows[r * (PH + 1) + ph], ... + 1)
  std::vector<int64_t> columns;  // RoI r, bin column pw: taps [columns[r * (PW + 1) + pw], ... + 1)
  std::vector<int64_t> index;    // r -> the RoI's index in the output
  std::vector<int> level;
  std::vector<int64_t> base;  // offset of its image in its level
  std::vector<T> divisor;

  void clear() {
    for (auto* v : {&rows, &columns, &index, &base}) {
      v->clear();
    }
    taps.clear();
    level.clear();
    divisor.clear();
  }

  // Appends the taps of one axis of every bin, in sample order (for_each_tap's).
  void add_axis(std::vector<int64_t>& bounds, T start, T bin_size, int grid, int64_t bins, int64_t size,
                int64_t stride) {
    for (int64_t bin = 0; bin < bins; ++bin) {
      bounds.push_back(static_cast<int64_t>(taps.size()));
      const SampleRange range = samples_on_axis(start, bin, bin_size, grid, size);
      for (int i = range.begin; i < range.end; ++i) {
        AxisTap<T> tap;
        if (axis_tap(sample_coord(start, bin, bin_size, i, grid), size, stride, tap)) {
          taps.push_back(tap);
        }
      }
    }
    bounds.push_back(static_cast<int64_t>(taps.size()));
  }

  void add(int64_t k, const T* roi, int lvl, int64_t batch, const LevelTable<T>& lv, const PoolParams& pool) {
    const RoIBins<T> bins = roi_bins(roi, lv.scale[lvl], pool);
    index.push_back(k);
    level.push_back(lvl);
    base.push_back(batch * lv.stride_n[lvl]);
    divisor.push_back(bin_divisor(bins));
    add_axis(rows, bins.start_h, bins.bin_h, bins.grid_h, pool.pooled_height, lv.height[lvl], lv.stride_h[lvl]);
    add_axis(columns, bins.start_w, bins.bin_w, bins.grid_w, pool.pooled_width, lv.width[lvl], lv.stride_w[lvl]);
  }
};

// Axis taps one set of tables holds before it stops taking RoIs (it takes at least one):
// bounds the memory (6 MB in float) whatever the grid and the number of RoIs.
constexpr size_t kMaxAxisTaps = size_t{1} << 18;

// Channels one unit of forward_nchw computes together: they share the taps' weights, and
// their sums are independent chains the CPU overlaps.
constexpr int64_t kChannelsPerUnit = 8;

// The n channel planes a unit reads (RoI r's image and level, channels c0 ...) and the n
// [PH, PW] outputs it writes.
template <int n, typename scalar_t, typename T>
inline void unit_pointers(const AxisTables<T>& tables, const ForwardArgs<scalar_t, T>& args, int64_t r, int64_t c0,
                          scalar_t* output, const scalar_t** planes, scalar_t** out) {
  const LevelTable<T>& lv = args.levels;
  const int lvl = tables.level[r];
  const int64_t num_bins = args.pool.pooled_height * args.pool.pooled_width;
  for (int i = 0; i < n; ++i) {
    planes[i] = args.features[lvl] + tables.base[r] + (c0 + i) * lv.stride_c[lvl];
    out[i] = output + (tables.index[r] * lv.channels + c0 + i) * num_bins;
  }
}

// sum[i] += the bin's samples of planes[i], i < n: its row taps [y_begin, y_end) times its
// column taps [x_begin, x_end), tap by tap.
template <int n, typename scalar_t, typename T>
inline void add_bin_taps(const AxisTap<T>* y_begin, const AxisTap<T>* y_end, const AxisTap<T>* x_begin,
                         const AxisTap<T>* x_end, const scalar_t* const* planes, T* sum) {
  for (const AxisTap<T>* y = y_begin; y != y_end; ++y) {
    for (const AxisTap<T>* x = x_begin; x != x_end; ++x) {
      const T w0 = y->h * x->h;
      const T w1 = y->h * x->l;
      const T w2 = y->l * x->h;
      const T w3 = y->l * x->l;
      const int64_t o0 = y->low + x->low;
      const int64_t o1 = y->low + x->high;
      const int64_t o2 = y->high + x->low;
      const int64_t o3 = y->high + x->high;
      for (int i = 0; i < n; ++i) {
        const scalar_t* p = planes[i];
        sum[i] += w0 * static_cast<T>(p[o0]) + w1 * static_cast<T>(p[o1]) + w2 * static_cast<T>(p[o2]) +
            w3 * static_cast<T>(p[o3]);
      }
    }
  }
}

// out[k, c0 .. c0 + n) of RoI r of `tables`, n <= kChannelsPerUnit.
template <int n, typename scalar_t, typename T>
inline void forward_nchw_unit(const AxisTables<T>& tables, const ForwardArgs<scalar_t, T>& args, int64_t r,
                              int64_t c0, scalar_t* output) {
  const int64_t PH = args.pool.pooled_height;
  const int64_t PW = args.pool.pooled_width;
  const AxisTap<T>* taps = tables.taps.data();
  const scalar_t* planes[n];
  scalar_t* out[n];
  unit_pointers<n>(tables, args, r, c0, output, planes, out);
  const int64_t* rows = tables.rows.data() + r * (PH + 1);
  const int64_t* columns = tables.columns.data() + r * (PW + 1);
  const T divisor = tables.divisor[r];
  for (int64_t ph = 0; ph < PH; ++ph) {
    for (int64_t pw = 0; pw < PW; ++pw) {
      T sum[n] = {};
      add_bin_taps<n>(taps + rows[ph], taps + rows[ph + 1], taps + columns[pw], taps + columns[pw + 1], planes, sum);
      for (int i = 0; i < n; ++i) {
        out[i][ph * PW + pw] = static_cast<scalar_t>(sum[i] / divisor);
      }
    }
  }
}

// Columns one row window covers: a bin whose column taps span at most this many columns is
// computed row by row, each of its rows one 8-float load times the bin's column weights.
constexpr int64_t kRowWindow = 8;

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)

// [sum(a[0]), ..., sum(a[7])].
inline __m256 horizontal_sums(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]);
  const __m256 t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]);
  const __m256 t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);  // per 128-bit half: sums of a0..a3's quarters
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// A bin's column taps [x_begin, x_end) as one row window: true, with `start` (its first
// column, the window inside a row of `width` >= kRowWindow) and `weights` (each column's summed
// weight), where the taps fall within kRowWindow columns; false otherwise (or without taps).
inline bool column_window(const AxisTap<float>* x_begin, const AxisTap<float>* x_end, int64_t width,
                          int64_t& start, float* weights) {
  int64_t first = width, last = -1;
  for (const AxisTap<float>* x = x_begin; x != x_end; ++x) {
    first = std::min(first, x->low);
    last = std::max(last, x->high);
  }
  if (x_begin == x_end || last - first >= kRowWindow) {
    return false;
  }
  start = std::min(first, width - kRowWindow);
  std::fill(weights, weights + kRowWindow, 0.0f);
  for (const AxisTap<float>* x = x_begin; x != x_end; ++x) {
    weights[x->low - start] += x->h;
    weights[x->high - start] += x->l;
  }
  return true;
}

// forward_nchw_unit for 8 float channels of a level whose rows are contiguous (column stride 1)
// and at least kRowWindow wide. The separable form: a bin's value is the sum over its row taps
// (y, wy) of wy * (row y . column weights), and where the bin's column taps fall within
// kRowWindow columns, each row's dot product is one load and one FMA per channel (4 rows: 4
// loads against the 16 scalar loads of the tap-by-tap sum). Wider bins take the scalar path.
inline bool forward_nchw_rows_apply(const LevelTable<float>& lv, int level) {
  return lv.stride_w[level] == 1 && lv.width[level] >= kRowWindow;
}

// Rows a RoI's bin column reads, at most, to take the row-dot form (below).
constexpr int64_t kMaxRowDots = 64;

// The span form (forward_nchw_unit_span): columns a RoI's bins read, at most, and bin columns
// (two vectors of the AVX2 build, of 8 floats; one of AVX512's 16 wider).
constexpr int64_t kMaxColumnSpan = 64;
constexpr int64_t kMaxSpanBins = 16;

// What forward_nchw_unit_rows needs of the RoIs of `tables` whose level the rows path reads,
// computed once for all their channel groups. Each bin column's row window (column_window):
// RoI r, column pw is entry r * PW + pw, start -1 where the bin's taps do not fit a window.
// The row-dot form, for a RoI that reads few rows for its bins (row_count[r] > 0; 0: it
// does not take it): each of its rows first_row[r] ... + row_count[r] - 1 is dotted with a
// column's window once, and a bin sums its row taps' dots; row_of[2 t], row_of[2 t + 1] are
// row tap t's two rows, relative to first_row.
struct RowsPlan {
  std::vector<int64_t> start;
  std::vector<float> weights;  // kRowWindow per entry
  std::vector<int64_t> first_row;
  std::vector<int64_t> row_count;
  std::vector<int32_t> row_of;
  // The span form (forward_nchw_unit_span), for a RoI in the row-dot form whose bins read
  // columns first_column[r] ... + column_span[r] - 1, at most kMaxColumnSpan (0: it does not
  // take it).
  std::vector<int64_t> first_column;
  std::vector<int64_t> column_span;

  void build(const AxisTables<float>& tables, const LevelTable<float>& lv, int64_t PH, int64_t PW) {
    const int64_t count = static_cast<int64_t>(tables.index.size());
    start.assign(count * PW, -1);
    weights.assign(count * PW * kRowWindow, 0.0f);
    first_row.assign(count, 0);
    row_count.assign(count, 0);
    row_of.assign(tables.taps.size() * 2, 0);
    first_column.assign(count, 0);
    column_span.assign(count, 0);
    for (int64_t r = 0; r < count; ++r) {
      const int level = tables.level[r];
      if (!forward_nchw_rows_apply(lv, level)) {
        continue;
      }
      const int64_t* columns = tables.columns.data() + r * (PW + 1);
      if (PW <= kMaxSpanBins && columns[PW] > columns[0]) {
        int64_t low = std::numeric_limits<int64_t>::max(), high = -1;
        for (int64_t t = columns[0]; t < columns[PW]; ++t) {
          low = std::min(low, tables.taps[t].low);
          high = std::max(high, tables.taps[t].high);
        }
        if (high - low < kMaxColumnSpan) {
          first_column[r] = low;
          column_span[r] = high - low + 1;
        }
      }
      for (int64_t pw = 0; pw < PW; ++pw) {
        const int64_t e = r * PW + pw;
        int64_t first = 0;
        if (column_window(tables.taps.data() + columns[pw], tables.taps.data() + columns[pw + 1], lv.width[level],
                          first, weights.data() + e * kRowWindow)) {
          start[e] = first;
        }
      }
      plan_row_dots(tables, r, lv.stride_h[level], PH);
    }
  }

  // The row-dot form pays where a RoI's rows are fewer than about 2 per bin row: each row dot
  // costs one load per channel, where the tap-by-tap form loads 2 rows per row tap of a bin.
  void plan_row_dots(const AxisTables<float>& tables, int64_t r, int64_t stride_h, int64_t PH) {
    const int64_t begin = tables.rows[r * (PH + 1)];
    const int64_t end = tables.rows[r * (PH + 1) + PH];
    if (begin == end || stride_h <= 0) {
      return;
    }
    int64_t low = std::numeric_limits<int64_t>::max(), high = -1;
    for (int64_t t = begin; t < end; ++t) {
      low = std::min(low, tables.taps[t].low / stride_h);
      high = std::max(high, tables.taps[t].high / stride_h);
    }
    const int64_t rows = high - low + 1;
    if (rows > std::min(2 * PH, kMaxRowDots)) {
      return;
    }
    first_row[r] = low;
    row_count[r] = rows;
    for (int64_t t = begin; t < end; ++t) {
      row_of[2 * t] = static_cast<int32_t>(tables.taps[t].low / stride_h - low);
      row_of[2 * t + 1] = static_cast<int32_t>(tables.taps[t].high / stride_h - low);
    }
  }
};

// Bin column pw of RoI r (8 channels, `planes` and `out` as unit_pointers gives them) in the
// row-dot form: dots[j][i] = row first_row + j of plane i . the column window, then each bin
// the sum of its row taps' weights times their rows' dots.
inline void forward_nchw_column_row_dots(const AxisTables<float>& tables, const RowsPlan& plan,
                                         const ForwardArgs<float, float>& args, int64_t r, int64_t pw, int64_t start,
                                         __m256 column_weights, const float* const* planes, float* const* out) {
  constexpr int n = 8;
  const int64_t PH = args.pool.pooled_height;
  const int64_t PW = args.pool.pooled_width;
  const int64_t stride_h = args.levels.stride_h[tables.level[r]];
  const int64_t rows = plan.row_count[r];
  __m256 dots[kMaxRowDots];
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t offset = (plan.first_row[r] + j) * stride_h + start;
    __m256 products[n];
    for (int i = 0; i < n; ++i) {
      products[i] = _mm256_mul_ps(_mm256_loadu_ps(planes[i] + offset), column_weights);
    }
    dots[j] = horizontal_sums(products);
  }
  const AxisTap<float>* taps = tables.taps.data();
  const int64_t* bin_rows = tables.rows.data() + r * (PH + 1);
  const __m256 divisor = _mm256_set1_ps(tables.divisor[r]);
  alignas(32) float sums[n];
  for (int64_t ph = 0; ph < PH; ++ph) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t t = bin_rows[ph]; t < bin_rows[ph + 1]; ++t) {
      acc = _mm256_fmadd_ps(_mm256_set1_ps(taps[t].h), dots[plan.row_of[2 * t]], acc);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(taps[t].l), dots[plan.row_of[2 * t + 1]], acc);
    }
    _mm256_store_ps(sums, _mm256_div_ps(acc, divisor));
    for (int i = 0; i < n; ++i) {
      out[i][ph * PW + pw] = sums[i];
    }
  }
}

// The 8 channels of RoI r in the span form, for a RoI in the row-dot form whose bins read few
// columns (plan.column_span[r] > 0) and at most NV vectors of bin columns: each of its rows
// is multiplied with a [span, PW] matrix of the columns' weights in each bin column (one
// broadcast value of the row times one vector of weights per column), which gives every bin
// column's dot of that row at once, lanes by bin column; a bin row is then the sum of its row
// taps' weights times those vectors, stored as a whole run of the output. No horizontal sums,
// no scalar stores (in the row-dot form these took most of the time: 100 RoIs at 14 x 14 on
// FPN maps).
template <int NV>
void forward_nchw_unit_span(const AxisTables<float>& tables, const RowsPlan& plan,
                            const ForwardArgs<float, float>& args, int64_t r, int64_t c0, float* output) {
  using Vec = Vectorized<float>;
  constexpr int64_t kV = Vec::size();
  constexpr int64_t kLanes = NV * kV;
  constexpr int n = 8;
  static_assert(n * NV <= 16, "accumulators and weights fit the vector registers");
  const int64_t PH = args.pool.pooled_height;
  const int64_t PW = args.pool.pooled_width;
  const AxisTap<float>* taps = tables.taps.data();
  const float* planes[n];
  float* out[n];
  unit_pointers<n>(tables, args, r, c0, output, planes, out);
  const int64_t span = plan.column_span[r];
  const int64_t first_column = plan.first_column[r];
  // weights[x * kLanes + pw]: column first_column + x's weight in bin column pw.
  alignas(64) float weights[kMaxColumnSpan * kLanes];
  std::fill(weights, weights + span * kLanes, 0.0f);
  const int64_t* columns = tables.columns.data() + r * (PW + 1);
  for (int64_t pw = 0; pw < PW; ++pw) {
    for (int64_t t = columns[pw]; t < columns[pw + 1]; ++t) {
      weights[(taps[t].low - first_column) * kLanes + pw] += taps[t].h;
      weights[(taps[t].high - first_column) * kLanes + pw] += taps[t].l;
    }
  }
  // dots[(j * n + i) * kLanes + pw]: row first_row + j of plane i, dotted with bin column pw.
  alignas(64) float dots[kMaxRowDots * n * kLanes];
  const int64_t stride_h = args.levels.stride_h[tables.level[r]];
  const int64_t rows = plan.row_count[r];
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t offset = (plan.first_row[r] + j) * stride_h + first_column;
    Vec acc[n][NV];
    for (int i = 0; i < n; ++i) {
      for (int v = 0; v < NV; ++v) {
        acc[i][v] = Vec(0.0f);
      }
    }
    for (int64_t x = 0; x < span; ++x) {
      Vec w[NV];
      for (int v = 0; v < NV; ++v) {
        w[v] = Vec::loadu(weights + x * kLanes + v * kV);
      }
      for (int i = 0; i < n; ++i) {
        const Vec value(planes[i][offset + x]);
        for (int v = 0; v < NV; ++v) {
          acc[i][v] = at::vec::fmadd(value, w[v], acc[i][v]);
        }
      }
    }
    for (int i = 0; i < n; ++i) {
      for (int v = 0; v < NV; ++v) {
        acc[i][v].store(dots + (j * n + i) * kLanes + v * kV);
      }
    }
  }
  const int64_t* bin_rows = tables.rows.data() + r * (PH + 1);
  const Vec divisor(tables.divisor[r]);
  for (int64_t ph = 0; ph < PH; ++ph) {
    for (int i = 0; i < n; ++i) {
      Vec sum[NV];
      for (int v = 0; v < NV; ++v) {
        sum[v] = Vec(0.0f);
      }
      for (int64_t t = bin_rows[ph]; t < bin_rows[ph + 1]; ++t) {
        const Vec high(taps[t].h), low(taps[t].l);  // the weights of the tap's low and high row
        const float* d0 = dots + (plan.row_of[2 * t] * n + i) * kLanes;
        const float* d1 = dots + (plan.row_of[2 * t + 1] * n + i) * kLanes;
        for (int v = 0; v < NV; ++v) {
          sum[v] = at::vec::fmadd(high, Vec::loadu(d0 + v * kV), sum[v]);
          sum[v] = at::vec::fmadd(low, Vec::loadu(d1 + v * kV), sum[v]);
        }
      }
      for (int v = 0; v < NV; ++v) {
        const int64_t lanes = std::min<int64_t>(kV, PW - v * kV);
        if (lanes > 0) {
          (sum[v] / divisor).store(out[i] + ph * PW + v * kV, static_cast<int>(lanes));
        }
      }
    }
  }
}

inline void forward_nchw_unit_rows(const AxisTables<float>& tables, const RowsPlan& plan,
                                   const ForwardArgs<float, float>& args, int64_t r, int64_t c0, float* output) {
  constexpr int n = 8;
  const int64_t PH = args.pool.pooled_height;
  const int64_t PW = args.pool.pooled_width;
  // The span form where the bin columns fill more than half of its vectors' lanes: 100 RoIs at
  // 14 x 14 on 4 FPN levels 6.7 -> 4.8 ms (AVX512) and 6.2 -> 5.0 ms (AVX2) on an AVX-512 Xeon,
  // where 1000 RoIs at 7 x 7 ran 3-5 % slower in AVX512's half-empty vectors (and the same in
  // AVX2's full ones: those are bound by reading the planes from L2).
  constexpr int64_t kV = Vectorized<float>::size();
  if (plan.row_count[r] > 0 && plan.column_span[r] > 0 && 2 * PW > kV) {
    if (PW <= kV) {
      return forward_nchw_unit_span<1>(tables, plan, args, r, c0, output);
    }
    if constexpr (2 * kV >= kMaxSpanBins) {
      return forward_nchw_unit_span<2>(tables, plan, args, r, c0, output);
    }
  }
  const AxisTap<float>* taps = tables.taps.data();
  const float* planes[n];
  float* out[n];
  unit_pointers<n>(tables, args, r, c0, output, planes, out);
  const int64_t* rows = tables.rows.data() + r * (PH + 1);
  const int64_t* columns = tables.columns.data() + r * (PW + 1);
  const float divisor = tables.divisor[r];
  alignas(32) float sums[n];
  for (int64_t pw = 0; pw < PW; ++pw) {
    const AxisTap<float>* x_begin = taps + columns[pw];
    const AxisTap<float>* x_end = taps + columns[pw + 1];
    const int64_t start = plan.start[r * PW + pw];
    const bool windowed = start >= 0;
    const __m256 column_weights =
        windowed ? _mm256_loadu_ps(plan.weights.data() + (r * PW + pw) * kRowWindow) : _mm256_setzero_ps();
    if (windowed && plan.row_count[r] > 0) {
      forward_nchw_column_row_dots(tables, plan, args, r, pw, start, column_weights, planes, out);
      continue;
    }
    for (int64_t ph = 0; ph < PH; ++ph) {
      if (!windowed) {
        float sum[n] = {};
        add_bin_taps<n>(taps + rows[ph], taps + rows[ph + 1], x_begin, x_end, planes, sum);
        for (int i = 0; i < n; ++i) {
          out[i][ph * PW + pw] = sum[i] / divisor;
        }
        continue;
      }
      __m256 acc[n];
      for (int i = 0; i < n; ++i) {
        acc[i] = _mm256_setzero_ps();
      }
      for (const AxisTap<float>* y = taps + rows[ph]; y != taps + rows[ph + 1]; ++y) {
        const __m256 low = _mm256_mul_ps(column_weights, _mm256_set1_ps(y->h));
        const __m256 high = _mm256_mul_ps(column_weights, _mm256_set1_ps(y->l));
        const int64_t o_low = y->low + start, o_high = y->high + start;
        for (int i = 0; i < n; ++i) {
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(planes[i] + o_low), low, acc[i]);
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(planes[i] + o_high), high, acc[i]);
        }
      }
      _mm256_store_ps(sums, _mm256_div_ps(horizontal_sums(acc), _mm256_set1_ps(divisor)));
      for (int i = 0; i < n; ++i) {
        out[i][ph * PW + pw] = sums[i];
      }
    }
  }
}
#endif

// out[k, c] for the RoIs of `tables` and every channel, in parallel over (channel group, RoI).
template <typename scalar_t, typename T>
void forward_nchw(const AxisTables<T>& tables, const ForwardArgs<scalar_t, T>& args, scalar_t* output) {
  const int64_t channels = args.levels.channels;
  const int64_t groups = (channels + kChannelsPerUnit - 1) / kChannelsPerUnit;
  const int64_t count = static_cast<int64_t>(tables.index.size());
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  RowsPlan plan;
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<T, float> && kChannelsPerUnit == 8) {
    plan.build(tables, args.levels, args.pool.pooled_height, args.pool.pooled_width);
  }
#endif
  // Consecutive units share a channel group: a thread's range walks a few planes, each while
  // it is in cache, RoI after RoI.
  at::parallel_for(0, groups * count, 16, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t c0 = unit / count * kChannelsPerUnit;
      const int64_t r = unit % count;
      if (channels - c0 >= kChannelsPerUnit) {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
        if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<T, float> && kChannelsPerUnit == 8) {
          if (forward_nchw_rows_apply(args.levels, tables.level[r])) {
            forward_nchw_unit_rows(tables, plan, args, r, c0, output);
            continue;
          }
        }
#endif
        forward_nchw_unit<kChannelsPerUnit>(tables, args, r, c0, output);
      } else {
        for (int64_t c = c0; c < channels; ++c) {  // the last, partial group
          forward_nchw_unit<1>(tables, args, r, c, output);
        }
      }
    }
  });
}

template <typename scalar_t, typename T>
void forward_impl(const ForwardArgs<scalar_t, T>& args, int64_t num_rois, scalar_t* output) {
  const LevelTable<T>& lv = args.levels;
  const int64_t num_bins = args.pool.pooled_height * args.pool.pooled_width;
  const int64_t roi_size = lv.channels * num_bins;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    RoITaps<T> rt;
    for (int64_t k = begin; k < end; ++k) {
      const T* roi = args.rois + k * 5;
      scalar_t* out_k = output + k * roi_size;
      const int level = level_of_box(roi + 1, lv);
      const int64_t batch = batch_of_roi(roi, lv.batch);
      if (level < 0 || batch < 0) {
        std::fill(out_k, out_k + roi_size, static_cast<scalar_t>(0));
        continue;
      }
      if (!is_nhwc(lv, level)) {
        continue;  // forward_nchw below
      }
      const scalar_t* base = args.features[level] + batch * lv.stride_n[level];
      rt.start(roi, level, lv, args.pool);
      while (rt.next(level, lv, args.pool)) {
        forward_roi_nhwc(rt, base, lv, num_bins, out_k);
      }
    }
  });
  // The NCHW RoIs in the order of (level, image, top edge): consecutive RoIs of a channel group
  // then read nearby rows of the same planes, still in cache.
  struct Placed {
    int level;
    int64_t batch;
    T top;
    int64_t k;
  };
  std::vector<Placed> placed;
  for (int64_t k = 0; k < num_rois; ++k) {
    const T* roi = args.rois + k * 5;
    const int level = level_of_box(roi + 1, lv);
    const int64_t batch = batch_of_roi(roi, lv.batch);
    if (level >= 0 && batch >= 0 && !is_nhwc(lv, level)) {
      // A NaN edge sorts last: the order must stay a strict weak one for std::sort.
      const T top = std::isnan(roi[2]) ? std::numeric_limits<T>::infinity() : roi[2];
      placed.push_back({level, batch, top, k});
    }
  }
  std::sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) {
    return a.level != b.level ? a.level < b.level : a.batch != b.batch ? a.batch < b.batch : a.top < b.top;
  });
  AxisTables<T> tables;
  for (const Placed& p : placed) {
    tables.add(p.k, args.rois + p.k * 5, p.level, p.batch, lv, args.pool);
    if (tables.taps.size() >= kMaxAxisTaps) {
      forward_nchw(tables, args, output);
      tables.clear();
    }
  }
  if (!tables.index.empty()) {
    forward_nchw(tables, args, output);
  }
}

// RoI indices grouped by (level, image), each group in input order.
struct RoIGroups {
  std::vector<int64_t> begin;  // group g: order[begin[g] .. begin[g + 1])
  std::vector<int64_t> order;
};

template <typename T>
RoIGroups group_rois(const T* rois, int64_t num_rois, const LevelTable<T>& lv) {
  const int64_t num_groups = lv.count * lv.batch;
  std::vector<int64_t> group(num_rois);
  RoIGroups groups;
  groups.begin.assign(num_groups + 1, 0);
  for (int64_t k = 0; k < num_rois; ++k) {
    const int level = level_of_box(rois + k * 5 + 1, lv);
    const int64_t batch = batch_of_roi(rois + k * 5, lv.batch);
    group[k] = (level < 0 || batch < 0) ? -1 : level * lv.batch + batch;
    if (group[k] >= 0) {
      ++groups.begin[group[k] + 1];
    }
  }
  for (int64_t g = 0; g < num_groups; ++g) {
    groups.begin[g + 1] += groups.begin[g];
  }
  groups.order.resize(groups.begin[num_groups]);
  std::vector<int64_t> fill(groups.begin.begin(), groups.begin.end() - 1);
  for (int64_t k = 0; k < num_rois; ++k) {
    if (group[k] >= 0) {
      groups.order[fill[group[k]]++] = k;
    }
  }
  return groups;
}

// Offset of bin b's element in one channel of grad_output (strides gs).
inline int64_t grad_offset(int64_t b, const int64_t* gs, const PoolParams& pool) {
  return b / pool.pooled_width * gs[2] + b % pool.pooled_width * gs[3];
}

// One table of one RoI: its gradient into channels [c_begin, c_end) of one image of one NHWC
// level; the channel range is contiguous at every tap, so it is vectorised.
template <typename grad_t, typename T>
void backward_roi_nhwc(const RoITaps<T>& rt, const grad_t* grad_k, const int64_t* gs, T* base,
                       const PoolParams& pool, int64_t c_begin, int64_t c_end, T* g_lanes) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const T divisor = rt.divisor;
  const int64_t width = c_end - c_begin;
  for (int64_t b = rt.first_bin; b < rt.end_bin; ++b) {
    const grad_t* grad_b = grad_k + grad_offset(b, gs, pool);
    for (int64_t j = 0; j < width; ++j) {
      g_lanes[j] = static_cast<T>(grad_b[(c_begin + j) * gs[1]]) / divisor;
    }
    for (const Tap<T>* tap = rt.bin_taps(b); tap != rt.bin_taps_end(b); ++tap) {
      for (int corner = 0; corner < 4; ++corner) {
        T* dst = base + tap->offset[corner] + c_begin;
        const T w = tap->weight[corner];
        const Vec vw(w);
        int64_t j = 0;
        for (; j + V <= width; j += V) {
          at::vec::fmadd(vw, Vec::loadu(g_lanes + j), Vec::loadu(dst + j)).store(dst + j);
        }
        for (; j < width; ++j) {
          dst[j] += g_lanes[j] * w;
        }
      }
    }
  }
}

// One RoI of `tables` (its index in the output: tables.index[r]): its gradient into one channel
// plane of an NCHW level. The transpose of the forward's sums: each bin's gradient spread over
// its row taps times its column taps. Where the column taps fall within kRowWindow columns
// (float, AVX2/AVX-512 builds, rows of at least kRowWindow), each row takes one 8-float
// read-modify-write instead of a scalar one per tap.
template <typename grad_t, typename T>
void backward_nchw_plane(const AxisTables<T>& tables, int64_t r, const grad_t* grad_c, const int64_t* gs,
                         const PoolParams& pool, int64_t width, bool rows_apply, T* plane) {
  const int64_t PH = pool.pooled_height;
  const int64_t PW = pool.pooled_width;
  const AxisTap<T>* taps = tables.taps.data();
  const int64_t* rows = tables.rows.data() + r * (PH + 1);
  const int64_t* columns = tables.columns.data() + r * (PW + 1);
  const T divisor = tables.divisor[r];
  for (int64_t pw = 0; pw < PW; ++pw) {
    const AxisTap<T>* x_begin = taps + columns[pw];
    const AxisTap<T>* x_end = taps + columns[pw + 1];
    if (x_begin == x_end) {
      continue;
    }
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<T, float>) {
      int64_t start = 0;
      alignas(32) float weights[kRowWindow];
      if (rows_apply && column_window(x_begin, x_end, width, start, weights)) {
        const __m256 column_weights = _mm256_load_ps(weights);
        for (int64_t ph = 0; ph < PH; ++ph) {
          const float g = static_cast<float>(grad_c[ph * gs[2] + pw * gs[3]]) / divisor;
          for (const AxisTap<T>* y = taps + rows[ph]; y != taps + rows[ph + 1]; ++y) {
            float* low = plane + y->low + start;
            float* high = plane + y->high + start;
            _mm256_storeu_ps(low, _mm256_fmadd_ps(column_weights, _mm256_set1_ps(g * y->h), _mm256_loadu_ps(low)));
            _mm256_storeu_ps(high, _mm256_fmadd_ps(column_weights, _mm256_set1_ps(g * y->l), _mm256_loadu_ps(high)));
          }
        }
        continue;
      }
    }
#endif
    (void)rows_apply;
    (void)width;
    for (int64_t ph = 0; ph < PH; ++ph) {
      const T g = static_cast<T>(grad_c[ph * gs[2] + pw * gs[3]]) / divisor;
      for (const AxisTap<T>* y = taps + rows[ph]; y != taps + rows[ph + 1]; ++y) {
        for (const AxisTap<T>* x = x_begin; x != x_end; ++x) {
          plane[y->low + x->low] += g * y->h * x->h;
          plane[y->low + x->high] += g * y->h * x->l;
          plane[y->high + x->low] += g * y->l * x->h;
          plane[y->high + x->high] += g * y->l * x->l;
        }
      }
    }
  }
}

template <typename grad_t, typename T>
void backward_impl(const BackwardArgs<grad_t, T>& args, int64_t num_rois) {
  const LevelTable<T>& lv = args.levels;
  const RoIGroups groups = group_rois(args.rois, num_rois, lv);
  const int64_t num_groups = static_cast<int64_t>(groups.begin.size()) - 1;
  std::vector<int64_t> busy;
  for (int64_t g = 0; g < num_groups; ++g) {
    if (groups.begin[g + 1] > groups.begin[g]) {
      busy.push_back(g);
    }
  }
  if (busy.empty() || lv.channels == 0) {
    return;
  }
  // Enough units to keep every thread busy; each unit rebuilds the taps of its RoIs, so
  // units are not made smaller than needed.
  const int64_t C = lv.channels;
  const int64_t wanted = 4 * static_cast<int64_t>(at::get_num_threads());
  const int64_t max_chunks = std::max<int64_t>(1, (C + kChannelQuantum - 1) / kChannelQuantum);
  const int64_t chunks = std::clamp<int64_t>((wanted + busy.size() - 1) / busy.size(), 1, max_chunks);
  int64_t chunk = (C + chunks - 1) / chunks;
  chunk = (chunk + kChannelQuantum - 1) / kChannelQuantum * kChannelQuantum;
  const int64_t chunks_per_group = (C + chunk - 1) / chunk;
  const int64_t num_units = static_cast<int64_t>(busy.size()) * chunks_per_group;

  at::parallel_for(0, num_units, 1, [&](int64_t begin, int64_t end) {
    RoITaps<T> rt;
    AxisTables<T> tables;
    std::vector<T> g_lanes(chunk);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t group = busy[u / chunks_per_group];
      const int64_t c_begin = (u % chunks_per_group) * chunk;
      const int64_t c_end = std::min(C, c_begin + chunk);
      const int level = static_cast<int>(group / lv.batch);
      const int64_t batch = group % lv.batch;
      T* base = args.grad_features[level] + batch * lv.stride_n[level];
      if (!is_nhwc(lv, level)) {
        // NCHW: channel-major, each plane taking every RoI's gradient while it is in cache,
        // from the RoIs' separable row and column taps.
        tables.clear();
        for (int64_t i = groups.begin[group]; i < groups.begin[group + 1]; ++i) {
          const int64_t k = groups.order[i];
          tables.add(k, args.rois + k * 5, level, batch, lv, args.pool);
        }
        const int64_t count = static_cast<int64_t>(tables.index.size());
        const bool rows_apply = lv.stride_w[level] == 1 && lv.width[level] >= kRowWindow;
        for (int64_t c = c_begin; c < c_end; ++c) {
          T* plane = base + c * lv.stride_c[level];
          for (int64_t r = 0; r < count; ++r) {
            const grad_t* grad_c = args.grad_output + tables.index[r] * args.grad_stride[0] + c * args.grad_stride[1];
            backward_nchw_plane(tables, r, grad_c, args.grad_stride, args.pool, lv.width[level], rows_apply, plane);
          }
        }
        continue;
      }
      for (int64_t i = groups.begin[group]; i < groups.begin[group + 1]; ++i) {
        const int64_t k = groups.order[i];
        const grad_t* grad_k = args.grad_output + k * args.grad_stride[0];
        rt.start(args.rois + k * 5, level, lv, args.pool);
        while (rt.next(level, lv, args.pool)) {
          if (rt.taps.empty()) {
            continue;  // these bins are off the map (or have an empty grid): no gradient
          }
          backward_roi_nhwc(rt, grad_k, args.grad_stride, base, args.pool, c_begin, c_end, g_lanes.data());
        }
      }
    }
  });
}

// dst[n, c, p] = src[n, c, p] over the flattened spatial index p, in tiles so that the
// strided side of the copy stays in L1 (ATen's NHWC -> NCHW copy is ~4x slower here).
template <typename S, typename D>
void copy_planes(const S* src, const int64_t* src_stride, D* dst, const int64_t* dst_stride, int64_t batch,
                 int64_t channels, int64_t spatial) {
  constexpr int64_t kTile = 32;
  const int64_t c_tiles = (channels + kTile - 1) / kTile;
  const int64_t p_tiles = (spatial + kTile - 1) / kTile;
  // Walk the destination's contiguous axis innermost.
  const bool channels_inner = dst_stride[1] == 1;
  at::parallel_for(0, batch * c_tiles * p_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t n = tile / (c_tiles * p_tiles);
      const int64_t c0 = (tile / p_tiles) % c_tiles * kTile;
      const int64_t p0 = tile % p_tiles * kTile;
      const int64_t c1 = std::min(channels, c0 + kTile);
      const int64_t p1 = std::min(spatial, p0 + kTile);
      const S* s = src + n * src_stride[0];
      D* d = dst + n * dst_stride[0];
      if (channels_inner) {
        for (int64_t p = p0; p < p1; ++p) {
          for (int64_t c = c0; c < c1; ++c) {
            d[c * dst_stride[1] + p * dst_stride[2]] = static_cast<D>(s[c * src_stride[1] + p * src_stride[2]]);
          }
        }
      } else {
        for (int64_t c = c0; c < c1; ++c) {
          for (int64_t p = p0; p < p1; ++p) {
            d[c * dst_stride[1] + p * dst_stride[2]] = static_cast<D>(s[c * src_stride[1] + p * src_stride[2]]);
          }
        }
      }
    }
  });
}

// Strides of [N, C, H * W] for a 4-d tensor whose H and W are not split.
void plane_strides(const at::Tensor& t, int64_t* stride) {
  stride[0] = t.stride(0);
  stride[1] = t.stride(1);
  stride[2] = t.stride(3);
}

}  // namespace

void copy_layout(const at::Tensor& src, at::Tensor& dst) {
  TORCH_INTERNAL_ASSERT(src.sizes() == dst.sizes() && src.dim() == 4);
  int64_t src_stride[3];
  int64_t dst_stride[3];
  plane_strides(src, src_stride);
  plane_strides(dst, dst_stride);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "roi_align_copy_layout", [&] {
    using S = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dst.scalar_type(), "roi_align_copy_layout", [&] {
      copy_planes(src.const_data_ptr<S>(), src_stride, dst.mutable_data_ptr<scalar_t>(), dst_stride, src.size(0),
                  src.size(1), src.size(2) * src.size(3));
    });
  });
}

void forward_kernel(
    at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params, at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features[0].scalar_type(), "roi_align_forward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto args = make_forward_args<scalar_t, T>(features, rois, params);
    forward_impl(args, rois.size(0), output.mutable_data_ptr<scalar_t>());
  });
}

void backward_kernel(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const RoIAlignParams& params,
    at::TensorList grad_features) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto args = make_backward_args<scalar_t, T>(grad, rois, grad_features, params);
    backward_impl(args, rois.size(0));
  });
}

}  // namespace msrcnn::roi_align::CPU_CAPABILITY
