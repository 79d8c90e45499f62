#pragma once

// paste_masks' per-element math: the ONLY copy, used by the CPU kernels, the CUDA kernels and
// the CPU element-by-element test build.
//
// Semantics: torchvision's paste_masks_in_image(masks, boxes, (H, W), padding) followed by
// `> threshold`, computed per output pixel with no per-mask resized image:
//  1. the M x M mask is padded by `padding` zeros (M_p = M + 2 padding) and its box expanded
//     about its centre by M_p / M (expand_boxes: each tensor op rounded in the box dtype),
//     then truncated to int64 (x0, y0, x1, y1), inclusive;
//  2. the padded mask is resized to (max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1)) by
//     F.interpolate(bilinear, align_corners=False), ATen's CPU arithmetic (source index and
//     weights in opmath, weights stored in the mask dtype, height outer, width inner);
//  3. pasted at rows [max(y0, 0), min(y1 + 1, H)) and columns [max(x0, 0), min(x1 + 1, W)):
//     image pixel (y, x) takes resized value (y - y0, x - x0); the rest is 0.
//  4. value (rounded to the mask dtype, as interpolate's output) > threshold.
// Where torchvision fails (a box wholly outside the image makes its slices disagree), nothing
// is pasted. NaN boxes paste nothing. Coordinates are clamped to +-2^40 before the expansion
// (so infinite ones paste as that), and the expanded box again before its truncation.
// "Nothing pasted" is a probability of 0, like every pixel outside the pasted region: it is
// foreground only for a negative threshold, as in `paste_masks_in_image(...) > threshold`.

#include "common/exact_math.h"
#include "common/macros.h"

#include <math.h>
#include <stdint.h>

namespace msrcnn::paste_masks {

constexpr double kMaxCoordinate = 1099511627776.0;  // 2^40

// Where one mask lands in the image.
struct PasteBox {
  int64_t x0;  // the expanded integer box: the resized mask's column 0 is image column x0
  int64_t y0;
  int64_t width;  // the resized mask's size
  int64_t height;
  int64_t col_begin;  // the pasted image region, [begin, end); empty where end <= begin
  int64_t col_end;
  int64_t row_begin;
  int64_t row_end;
};

template <typename T>
HOST_DEVICE_INLINE T clamp_coordinate(T v) {
  const T limit = static_cast<T>(kMaxCoordinate);
  return v > limit ? limit : (v < -limit ? -limit : v);
}

template <typename T>
HOST_DEVICE_INLINE int64_t truncate_coordinate(T v) {
  return static_cast<int64_t>(clamp_coordinate(v));  // towards zero, as Tensor.to(torch.int64)
}

// torchvision's expand_boxes, expand_masks and paste_mask_in_image geometry for one box.
template <typename T>
HOST_DEVICE_INLINE PasteBox paste_box(const T* box, int64_t mask_size, int64_t padding, int64_t height, int64_t width) {
  PasteBox p{0, 0, 1, 1, 0, 0, 0, 0};
  if (!(box[0] == box[0] && box[1] == box[1] && box[2] == box[2] && box[3] == box[3])) {
    return p;
  }
  // Finite from here on (inf - inf would be NaN); the identity within +-2^40.
  const T bx1 = clamp_coordinate(box[0]);
  const T by1 = clamp_coordinate(box[1]);
  const T bx2 = clamp_coordinate(box[2]);
  const T by2 = clamp_coordinate(box[3]);
  // float(M + 2 padding) / M in Python (double), applied in the boxes' dtype.
  const T scale = static_cast<T>(static_cast<double>(mask_size + 2 * padding) / static_cast<double>(mask_size));
  const T half = static_cast<T>(0.5);
  const T w_half = mul_rn(mul_rn(sub_rn(bx2, bx1), half), scale);
  const T h_half = mul_rn(mul_rn(sub_rn(by2, by1), half), scale);
  const T x_c = mul_rn(add_rn(bx2, bx1), half);
  const T y_c = mul_rn(add_rn(by2, by1), half);
  p.x0 = truncate_coordinate(sub_rn(x_c, w_half));
  p.y0 = truncate_coordinate(sub_rn(y_c, h_half));
  const int64_t x1 = truncate_coordinate(add_rn(x_c, w_half));
  const int64_t y1 = truncate_coordinate(add_rn(y_c, h_half));
  p.width = x1 - p.x0 + 1 > 1 ? x1 - p.x0 + 1 : 1;
  p.height = y1 - p.y0 + 1 > 1 ? y1 - p.y0 + 1 : 1;
  p.col_begin = p.x0 > 0 ? p.x0 : 0;
  p.col_end = x1 + 1 < width ? x1 + 1 : width;
  p.row_begin = p.y0 > 0 ? p.y0 : 0;
  p.row_end = y1 + 1 < height ? y1 + 1 : height;
  return p;
}

// One axis of the resize: the two source pixels of output pixel `out` and their weights,
// as ATen's compute_source_index_and_lambda (align_corners=False). Weights are rounded to
// the mask dtype scalar_t, as ATen stores them.
template <typename T>
struct ResizeTap {
  int64_t index0;
  int64_t index1;
  T weight0;
  T weight1;
};

template <typename scalar_t, typename T>
HOST_DEVICE_INLINE ResizeTap<T> resize_tap(int64_t out, int64_t in_size, int64_t out_size) {
  if (out_size == in_size) {
    return ResizeTap<T>{out, out, static_cast<T>(1), static_cast<T>(0)};
  }
  const T scale = static_cast<T>(in_size) / static_cast<T>(out_size);
  T real = scale * (static_cast<T>(out) + static_cast<T>(0.5)) - static_cast<T>(0.5);
  real = real < static_cast<T>(0) ? static_cast<T>(0) : real;
  // ATen floors with floorf, for double too.
  int64_t index0 = static_cast<int64_t>(floorf(static_cast<float>(real)));
  index0 = index0 < in_size - 1 ? index0 : in_size - 1;
  T lambda1 = real - static_cast<T>(index0);
  lambda1 = lambda1 > static_cast<T>(0) ? lambda1 : static_cast<T>(0);
  lambda1 = lambda1 < static_cast<T>(1) ? lambda1 : static_cast<T>(1);
  const scalar_t stored1 = static_cast<scalar_t>(lambda1);
  const scalar_t stored0 = static_cast<scalar_t>(static_cast<scalar_t>(1.) - stored1);
  const int64_t index1 = index0 + (index0 < in_size - 1 ? 1 : 0);
  return ResizeTap<T>{index0, index1, static_cast<T>(stored0), static_cast<T>(stored1)};
}

// Value of the padded mask at (row, col) of its M_p x M_p grid.
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T padded_value(const scalar_t* mask, int64_t mask_size, int64_t padding, int64_t row, int64_t col) {
  row -= padding;
  col -= padding;
  if (row < 0 || row >= mask_size || col < 0 || col >= mask_size) {
    return static_cast<T>(0);
  }
  return static_cast<T>(mask[row * mask_size + col]);
}

// Interpolate's value at one output pixel: height outer, width inner (ATen's order).
template <typename T>
HOST_DEVICE_INLINE T bilinear(T v00, T v01, T v10, T v11, const ResizeTap<T>& ty, const ResizeTap<T>& tx) {
  const T top = v00 * tx.weight0 + v01 * tx.weight1;
  const T bottom = v10 * tx.weight0 + v11 * tx.weight1;
  return top * ty.weight0 + bottom * ty.weight1;
}

// interpolate's output is rounded to the mask dtype before the comparison.
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE bool above(T value, T threshold) {
  return static_cast<T>(static_cast<scalar_t>(value)) > threshold;
}

// ---------------------------------------------------------------------------------------
// Element body: output pixel `index` of [N, H, W]. The CUDA kernel runs one thread per index;
// the CPU test build runs the same body in a loop. Tensors contiguous.

// scalar_t: the masks' dtype; T: its opmath type (float for float and half types); box_t:
// the boxes' dtype.
template <typename scalar_t, typename T, typename box_t>
struct Args {
  const scalar_t* masks;  // [N, M, M]
  const box_t* boxes;     // [N, 4]
  int64_t mask_size;
  int64_t padding;
  int64_t height;
  int64_t width;
  T threshold;  // rounded to the mask dtype, as `probabilities > threshold` does
};

template <typename scalar_t, typename T, typename box_t>
HOST_DEVICE_INLINE bool paste_element(int64_t index, const Args<scalar_t, T, box_t>& a) {
  const int64_t x = index % a.width;
  const int64_t y = (index / a.width) % a.height;
  const int64_t n = index / a.width / a.height;
  const PasteBox p = paste_box(a.boxes + n * 4, a.mask_size, a.padding, a.height, a.width);
  if (y < p.row_begin || y >= p.row_end || x < p.col_begin || x >= p.col_end) {
    return above<scalar_t, T>(static_cast<T>(0), a.threshold);  // nothing pasted here: probability 0
  }
  const int64_t padded = a.mask_size + 2 * a.padding;
  const ResizeTap<T> ty = resize_tap<scalar_t, T>(y - p.y0, padded, p.height);
  const ResizeTap<T> tx = resize_tap<scalar_t, T>(x - p.x0, padded, p.width);
  const scalar_t* mask = a.masks + n * a.mask_size * a.mask_size;
  const T value = bilinear(
      padded_value<scalar_t, T>(mask, a.mask_size, a.padding, ty.index0, tx.index0),
      padded_value<scalar_t, T>(mask, a.mask_size, a.padding, ty.index0, tx.index1),
      padded_value<scalar_t, T>(mask, a.mask_size, a.padding, ty.index1, tx.index0),
      padded_value<scalar_t, T>(mask, a.mask_size, a.padding, ty.index1, tx.index1), ty, tx);
  return above<scalar_t, T>(value, a.threshold);
}

}  // namespace msrcnn::paste_masks
