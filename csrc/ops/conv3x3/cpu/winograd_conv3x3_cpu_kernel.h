#pragma once

// conv3x3's Winograd CPU kernels (stride 1), compiled once per CPU capability (DEFAULT, AVX2,
// AVX512).

#include <ATen/core/Tensor.h>

#include <optional>

namespace msrcnn::winograd_conv3x3 {

// Output channels per panel of the transformed filters, the same in every build (the host
// packs the filters with it): the width of the GEMM micro-tile in the DEFAULT and AVX2 builds
// (two vectors of 8 floats); the AVX512 build's micro-tile spans two panels (two vectors of 16).
constexpr int64_t kPanel = 16;

// The weight gradient's transformed rows (v and w of transform_tiles_kernel) have a multiple
// of this many floats: whole vectors in every build (AVX512's are 16 floats).
constexpr int64_t kRowQuantum = 16;

// Whether a chunk of transformed tiles with `elements` elements each is laid out tile by tile
// (a tile's elements one after the other, row by row) rather than plane by plane (element by
// element, a plane holding one element of every tile): for F(7x7)'s 81, whose transforms
// read and write a tile's elements as that many streams otherwise.
constexpr bool tiles_are_rows_of_elements(int64_t elements) {
  return elements > 36;
}

// Panels that hold `out_channels` (the last one zero-padded).
inline int64_t panels_of(int64_t out_channels) {
  return (out_channels + kPanel - 1) / kPanel;
}

// Every kernel takes `tile`: 2 for Winograd F(2x2, 3x3), 4 for F(4x4, 3x3), 7 for F(7x7, 3x3)
// (winograd_conv3x3_math.h); E = 16, 36 or 81 transformed elements per tile, and tiles of
// `tile` x `tile` outputs.
//
// transform_filter_kernel: weight [Cout, Cin, 3, 3] float, any strides (fastest: each 3x3
// filter contiguous, or output channels adjacent); packed [E, panels, Cin, 16] float,
// contiguous, zero-filled where Cout % 16 != 0: packed[xi, p, ci, j] = (G g G^T)[xi] of the
// filter g of output channel 16 p + j, input ci, rotated by 180° (g[2 - y, 2 - x]) if `flip`.
//
// forward_kernel: input [N, Cin, H, W] float with channel stride 1 (channels-last, or any
// strides of N, H, W); packed from transform_filter_kernel (same tile); bias [Cout] contiguous
// or none; output [N, Cout, H, W] float, channel stride 1, every element written. The tiles are
// processed in chunks of `tiles_per_chunk` (parallel over chunks): each chunk's transformed
// inputs, E GEMMs and output transform run on one thread's scratch buffers. tiles_per_chunk 0:
// all the tiles in one chunk, whose transforms the threads split by tiles and whose GEMMs by
// panels of output channels (U read once in all: few tiles, large U).
//
// The weight gradient's two transforms (its E products are ATen's batched GEMM, between them):
// transform_tiles_kernel: input [N, Cin, H, W] and grad [N, Cout, H, W] float with channel
// stride 1; v [E, >= count, >= Cin] and w [E, >= count, >= Cout] float with row stride a
// multiple of kRowQuantum floats and unit column stride, planes at any stride (laid out plane
// by plane or tile by tile, tiles_are_rows_of_elements). For the tiles [first, first + count):
// v[xi, t, ci] = (B^T d B)[xi] of input channel ci and w[xi, t, co] = (A dy A^T)[xi] of the
// output gradient's channel co (its tile x tile block, zero outside the map).
// filter_gradient_kernel: grad_u [E, Cout, Cin] float contiguous (the gradient of the
// transformed filters); grad_weight [Cout, Cin, 3, 3] float contiguous = G^T grad_u G.
#define MSRCNN_DECLARE_WINOGRAD_CONV3X3_CPU_KERNELS(CAPABILITY)                                        \
  namespace CAPABILITY {                                                                             \
  void transform_filter_kernel(const at::Tensor& weight, bool flip, int64_t tile, at::Tensor& packed); \
  void forward_kernel(const at::Tensor& input, const at::Tensor& packed, const std::optional<at::Tensor>& bias, \
                      bool relu, int64_t tile, int64_t tiles_per_chunk, at::Tensor& output);         \
  void transform_tiles_kernel(const at::Tensor& input, const at::Tensor& grad, int64_t tile, int64_t first,  \
                              int64_t count, at::Tensor& v, at::Tensor& w);                          \
  void filter_gradient_kernel(const at::Tensor& grad_u, int64_t tile, at::Tensor& grad_weight);       \
  }

MSRCNN_DECLARE_WINOGRAD_CONV3X3_CPU_KERNELS(DEFAULT)
MSRCNN_DECLARE_WINOGRAD_CONV3X3_CPU_KERNELS(AVX2)
MSRCNN_DECLARE_WINOGRAD_CONV3X3_CPU_KERNELS(AVX512)

#undef MSRCNN_DECLARE_WINOGRAD_CONV3X3_CPU_KERNELS

}  // namespace msrcnn::winograd_conv3x3
