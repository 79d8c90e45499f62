// paste_masks CPU kernel over paste_masks_math.h. Compiled once per CPU capability:
// CPU_CAPABILITY is DEFAULT, AVX2 or AVX512 (see setup.py).
//
// Per mask: every output row outside the pasted region is zero-filled; inside it, bilinear
// interpolation is split by axis (ATen computes each output as
// (v00 wx0 + v01 wx1) wy0 + (v10 wx0 + v11 wx1) wy1): the width interpolation of every
// padded-mask row at every pasted column is tabulated once, so an output row is two
// contiguous table rows scaled and compared with the threshold (vectorised for float masks).

#include "ops/paste_masks/cpu/paste_masks_cpu_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace msrcnn::paste_masks::CPU_CAPABILITY {
namespace {

template <typename scalar_t, typename T>
void paste_one(const scalar_t* mask, const PasteBox& p, int64_t mask_size, const PasteParams& params, T threshold,
               std::vector<T>& columns, uint8_t* out) {
  const int64_t height = params.height;
  const int64_t width = params.width;
  // Pixels where nothing is pasted hold probability 0: background unless the threshold is negative.
  const int background = above<scalar_t, T>(static_cast<T>(0), threshold) ? 1 : 0;
  if (p.row_end <= p.row_begin || p.col_end <= p.col_begin) {
    std::memset(out, background, height * width);
    return;
  }
  std::memset(out, background, p.row_begin * width);
  std::memset(out + p.row_end * width, background, (height - p.row_end) * width);
  const int64_t span = p.col_end - p.col_begin;
  // columns[r * span + (x - col_begin)]: mask row r (padded row padding + r) interpolated at
  // image column x; row mask_size is zeros, the padding rows (however many: memory stays
  // O(M x span) for any padding).
  columns.assign((mask_size + 1) * span, static_cast<T>(0));
  for (int64_t x = p.col_begin; x < p.col_end; ++x) {
    const ResizeTap<T> tx = resize_tap<scalar_t, T>(x - p.x0, mask_size + 2 * params.padding, p.width);
    for (int64_t r = 0; r < mask_size; ++r) {
      const int64_t i = r + params.padding;
      columns[r * span + x - p.col_begin] =
          padded_value<scalar_t, T>(mask, mask_size, params.padding, i, tx.index0) * tx.weight0 +
          padded_value<scalar_t, T>(mask, mask_size, params.padding, i, tx.index1) * tx.weight1;
    }
  }
  const auto padded_row = [&](int64_t i) {
    const int64_t r = i - params.padding;
    return columns.data() + (r >= 0 && r < mask_size ? r : mask_size) * span;
  };
  const int64_t padded = mask_size + 2 * params.padding;
  for (int64_t y = p.row_begin; y < p.row_end; ++y) {
    uint8_t* row = out + y * width;
    std::memset(row, background, p.col_begin);
    std::memset(row + p.col_end, background, width - p.col_end);
    const ResizeTap<T> ty = resize_tap<scalar_t, T>(y - p.y0, padded, p.height);
    const T* top = padded_row(ty.index0);
    const T* bottom = padded_row(ty.index1);
    uint8_t* pasted = row + p.col_begin;
    for (int64_t c = 0; c < span; ++c) {
      pasted[c] = above<scalar_t, T>(top[c] * ty.weight0 + bottom[c] * ty.weight1, threshold);
    }
  }
}

template <typename scalar_t>
void paste_typed(const at::Tensor& masks, const std::vector<PasteBox>& placements, const PasteParams& params,
                 at::Tensor& output) {
  using T = at::opmath_type<scalar_t>;
  const int64_t mask_size = masks.size(3);
  const scalar_t* data = masks.const_data_ptr<scalar_t>();
  uint8_t* out = static_cast<uint8_t*>(output.mutable_data_ptr());
  const T threshold = static_cast<T>(static_cast<scalar_t>(params.threshold));
  const int64_t plane = params.height * params.width;
  at::parallel_for(0, masks.size(0), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> columns;
    for (int64_t n = begin; n < end; ++n) {
      paste_one(data + n * mask_size * mask_size, placements[n], mask_size, params, threshold, columns,
                out + n * plane);
    }
  });
}

}  // namespace

void paste_kernel(const at::Tensor& masks, const std::vector<PasteBox>& placements, const PasteParams& params,
                  at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, masks.scalar_type(), "paste_masks_cpu", [&] {
    paste_typed<scalar_t>(masks, placements, params, output);
  });
}

}  // namespace msrcnn::paste_masks::CPU_CAPABILITY
