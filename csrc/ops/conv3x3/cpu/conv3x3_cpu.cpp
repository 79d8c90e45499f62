// conv3x3's CPU kernels: the entry points (checks, dtype and layout choice, the filter transform,
// chunk size); the Winograd kernels are in winograd_conv3x3_cpu_kernel.cpp (per CPU capability).
//
// Forward at stride 1: float32 runs the Winograd kernels (F(2x2), F(4x4) or F(7x7), see
// winograd_tile); float16 and bfloat16 run
// them in float32 (the input and weight converted, the output rounded once); float64 runs ATen's
// convolution: it is the reference precision, and Winograd's transforms would only lose digits
// there. Stride 2 runs ATen's convolution (Winograd F(2x2, 3x3) is a stride-1 algorithm).
// Input gradient at stride 1: the same convolution of the output gradient with the flipped,
// transposed filters, so it runs the forward kernels too. Weight gradient at stride 1 (float32;
// float16 and bfloat16 in float32): Winograd backwards (winograd_conv3x3_math.h), the 16 products
// summed over tiles by ATen's batched GEMM; ATen's convolution_backward at stride 2 and in float64.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "common/large_tensors.h"
#include "ops/conv3x3/conv3x3_host.h"
#include "ops/conv3x3/cpu/packed_filter_cache.h"
#include "ops/conv3x3/cpu/winograd_conv3x3_cpu_kernel.h"
#include "ops/conv3x3/winograd_conv3x3_math.h"

namespace msrcnn::conv3x3 {
namespace {

using winograd_conv3x3::kPanel;
using winograd_conv3x3::kRowQuantum;
using winograd_conv3x3::panels_of;
using winograd_conv3x3::tiles_along;

// Which Winograd algorithm a stride-1 convolution gets, unless set_winograd_tile() forced one.
// F(7x7, 3x3) (tile 7) on maps whose sides are 7, 13 or 14 (its tiles cover them with at most
// one row or column to spare: the RoI heads' 7 x 7 and 14 x 14 maps, 1.8x fewer products than
// F(4x4)'s 16 x 16 on 14 x 14) with at most 512 x 256 channels (input x output, either way
// round) and at least 64 tiles (its 81 filter planes are transformed on every call); F(4x4, 3x3)
// (tile 4) on maps of at least 14 x 14 with at most 256 x 256 channels; F(2x2, 3x3) (tile 2)
// otherwise. Measured on a 2-core AMD EPYC (AVX2), forward, F(7x7) / F(4x4) / F(2x2): 40 / 55 /
// 60 ms on 100 x 256 x 14 x 14 maps, 30 / 38 / 49 ms on 256 x 256 x 7 x 7, 53 / 62 / 95 ms on
// 512 x 256 x 7 x 7, 2.0 / 2.5 / 3.6 ms on 256 x 64 x 7 x 7; near break-even from 16 to 32 maps
// of 256 x 14 x 14 (64-128 tiles; 8.9 / 9.6 / 9.6 and 20.2 / 18.2 / 19.1 ms), slower below (8
// maps of 256 x 7 x 7: 4.6 / 2.0 / 2.1 ms) and on larger maps that its tiles cover less well
// (2 x 256 x 19 x 25: 6.6 / 4.7 / 4.6 ms). F(4x4) is 1.2-1.6x faster than F(2x2) at 64 and 128
// channels from 14 x 14 on, 1.0-1.3x at 256 channels (docs/triton_conv3x3.md has the table),
// and 3-5x slower at 512 x 512 channels, whose 36 transformed filter planes (38 MB) stream from
// memory for every chunk of tiles. (A direct im2col GEMM was tried for small maps with many
// channels: slower than F(2x2) in isolation and in training.)
int64_t winograd_tile(int64_t images, int64_t height, int64_t width, int64_t in_channels, int64_t out_channels) {
  const int64_t forced = forced_winograd_tile();
  if (forced != 0) {
    return forced;
  }
  constexpr int64_t kSide = 14;
  constexpr int64_t kMinTilesF7 = 64;
  const int64_t channel_product = in_channels * out_channels;
  auto covered_by_f7 = [](int64_t side) { return side <= kSide && tiles_along(side, 7) * 7 - side <= 1; };
  const int64_t tiles_f7 = images * tiles_along(height, 7) * tiles_along(width, 7);
  if (covered_by_f7(height) && covered_by_f7(width) && channel_product <= 512 * 256 && tiles_f7 >= kMinTilesF7) {
    return 7;
  }
  return height >= kSide && width >= kSide && channel_product <= 256 * 256 ? 4 : 2;
}

// Transformed elements per tile of `tile` x `tile` outputs: (tile + 2)^2.
int64_t elements_of(int64_t tile) {
  return (tile + 2) * (tile + 2);
}

// U[E][panels][Cin][16] from weight [Cout, Cin, 3, 3] float (any strides), its filters rotated
// by 180° if `flip`.
at::Tensor transform_filter(const at::Tensor& weight, bool flip, int64_t tile) {
  const int64_t out_channels = weight.size(0);
  const int64_t in_channels = weight.size(1);
  const auto shape = {elements_of(tile), panels_of(out_channels), in_channels, kPanel};
  at::Tensor packed = empty_large(shape, weight.options());
  if (out_channels % kPanel != 0) {
    packed.zero_();
  }
  MSRCNN_CPU_DISPATCH(::msrcnn::winograd_conv3x3, transform_filter_kernel, weight, flip, tile, packed);
  return packed;
}

// Tiles per chunk. Two pulls (measured on a 2-core AMD EPYC, 512 KiB L2 per core, 32 MiB L3):
// a chunk's V and M (16 x tiles x (Cin + Cout) floats) should fit L2, which wants few tiles
// (64 channels: 64, 256: 16); and each chunk streams all of U (16 x Cin x Cout floats) from
// L3, which wants many where U is large (512 channels, 16 MiB: 132 tiles ran 1.25x faster
// than 24). The larger of the two wins; 256 channels are flat from 12 to 144. 0: all the tiles
// in one chunk whose GEMMs the threads split by output channels (forward_kernel).
int64_t tiles_per_chunk(int64_t tiles, int64_t elements, int64_t in_channels, int64_t out_channels) {
  constexpr int64_t kScratchBytes = 512 * 1024;
  constexpr int64_t kFilterBytesPerTile = 128 * 1024;
  // Rows of the DEFAULT and AVX2 micro-tiles; the AVX512 build's (12) ends a chunk of an odd
  // multiple of 6 with a 6-row micro-tile, which the kernel handles like any remainder.
  constexpr int64_t kRowsPerMicroTile = 6;
  const int64_t row_bytes = elements * (in_channels + out_channels) * int64_t{sizeof(float)};
  const int64_t filter_bytes = elements * in_channels * out_channels * int64_t{sizeof(float)};
  // At most ~8 MiB of scratch per thread: F(7x7)'s 81 planes of 256 + 256 channels make 166 KiB
  // a tile, and on 100 x 256 x 14 x 14 maps 36-72 tiles ran in 40 ms where 162 (the filter's
  // pull alone) took 73. F(7x7)'s chunks laid out tile by tile, at most ~4 MiB: on those maps
  // 30 tiles 21.9 ms where 54 took 24.0 (257 input channels 21.0 and 22.6; medians of 12
  // alternating runs, AVX-512 Xeon; 24-42 tiles within 4 %).
  constexpr int64_t kMaxScratchBytes = 8 * 1024 * 1024;
  const int64_t max_scratch_bytes =
      winograd_conv3x3::tiles_are_rows_of_elements(elements) ? kMaxScratchBytes / 2 : kMaxScratchBytes;
  int64_t chunk = std::max(kScratchBytes / row_bytes, filter_bytes / kFilterBytesPerTile);
  chunk = std::min(chunk, max_scratch_bytes / row_bytes);
  chunk = std::clamp<int64_t>(chunk, 12, 240);
  const int64_t threads = at::get_num_threads();
  // Few tiles for the size of U (small maps, many channels: C4 and C5 of a training batch):
  // one chunk of all the tiles, shared by the threads, which split U's panels between them,
  // where each thread's own chunk would stream all of U. The 2 x 512 x 6 x 7 conv 1.8 -> 1.55
  // ms, 2 x 256 x 14 x 14 1.25 -> 1.15 (forward and input gradient alike, AVX-512 Xeon).
  const int64_t all_rows_bytes = tiles * row_bytes;
  if (threads > 1 && all_rows_bytes < filter_bytes && all_rows_bytes <= kMaxScratchBytes) {
    return 0;
  }
  // At least one chunk per thread.
  chunk = std::min(chunk, (tiles + threads - 1) / threads);
  return (chunk + kRowsPerMicroTile - 1) / kRowsPerMicroTile * kRowsPerMicroTile;
}

// `t` where its channels are contiguous (what the kernels read, with any strides of N, H and
// W), else a channels-last copy of it in a reused block (empty_large): a fresh 20 MB copy
// (the mask head's NCHW input of 100 RoIs at 14 x 14) faulted its pages in at every call, and
// those convolutions took ~6 ms more than the channels-last ones (AVX-512 Xeon).
at::Tensor with_contiguous_channels(const at::Tensor& t) {
  if (t.stride(1) == 1) {
    return t;
  }
  at::Tensor copy = empty_large(t.sizes(), t.options(), at::MemoryFormat::ChannelsLast);
  copy.copy_(t);
  return copy;
}

// The convolution with `weight`'s filters, rotated by 180° if `flip`; `keep_filters`: the
// transformed filters from (and into) cached_packed_filter, for weights that do not change
// from call to call (inference, frozen layers: the RoI heads' F(7x7) filters are 21 MB per
// convolution, written at every call). The input gradient does not keep them: its weights
// are training's.
at::Tensor forward_float(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         bool relu, bool flip, bool keep_filters) {
  at::Tensor output = empty_output(input, weight, 1);
  if (output.numel() == 0) {
    return output;
  }
  if (input.size(1) == 0) {
    return bias_only(output, bias, relu);
  }
  const at::Tensor x = with_contiguous_channels(input);
  const int64_t tile = winograd_tile(input.size(0), input.size(2), input.size(3), input.size(1), weight.size(0));
  std::optional<at::Tensor> b;
  if (bias.has_value()) {
    b = bias->contiguous();
  }
  const auto transform = [&] { return transform_filter(weight, flip, tile); };
  const at::Tensor packed = keep_filters ? cached_packed_filter(weight, flip, tile, transform) : transform();
  const int64_t tiles = input.size(0) * tiles_along(input.size(2), tile) * tiles_along(input.size(3), tile);
  const int64_t chunk = tiles_per_chunk(tiles, elements_of(tile), input.size(1), weight.size(0));
  MSRCNN_CPU_DISPATCH(::msrcnn::winograd_conv3x3, forward_kernel, x, packed, b, relu, tile, chunk, output);
  return output;
}

// Winograd at stride 1 for the floating types it serves (float64: ATen's, see above).
bool runs_winograd(const at::Tensor& input, int64_t stride) {
  const auto dtype = input.scalar_type();
  return stride == 1 && (dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16);
}

at::Tensor winograd_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            bool relu, bool flip, bool keep_filters) {
  if (input.scalar_type() == at::kFloat) {
    return forward_float(input, weight, bias, relu, flip, keep_filters);
  }
  std::optional<at::Tensor> bias_float;
  if (bias.has_value()) {
    bias_float = bias->to(at::kFloat);
  }
  const at::Tensor x = input.to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::ChannelsLast);
  return forward_float(x, weight.to(at::kFloat), bias_float, relu, flip, keep_filters)
      .to(input.scalar_type(), /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::ChannelsLast);
}

// Tiles per chunk of the weight gradient: the chunk's transformed inputs and output gradients
// (16 x tiles x (Cin + Cout) floats) take at most ~8 MiB, and each chunk's batched GEMM sums
// over as many tiles as that allows (at least 64).
int64_t weight_gradient_chunk(int64_t tiles, int64_t elements, int64_t in_channels, int64_t out_channels) {
  constexpr int64_t kBufferFloats = 2 * 1024 * 1024;
  const int64_t per_tile = elements * (in_channels + out_channels + 32);
  return std::min(tiles, std::max<int64_t>(64, kBufferFloats / per_tile));
}

// [E, tiles, row] for the transformed tiles of the weight gradient: plane by plane, or tile by
// tile (a transposed [tiles, E, row]) where the forward kernels lay a chunk out so
// (tiles_are_rows_of_elements): F(7x7)'s weight gradients took 8-14 % less time so (the
// 100 x 257 -> 256 x 14 x 14 head conv 27.9 -> 25.2 ms, the box head's 256 x 64 x 7 x 7 2.06 ->
// 1.78; medians of 12 alternating runs, AVX-512 Xeon), its batched GEMM reading each tile's
// rows a tile apart.
at::Tensor transformed_tiles(int64_t elements, int64_t tiles, int64_t row, const at::TensorOptions& options) {
  if (winograd_conv3x3::tiles_are_rows_of_elements(elements)) {
    return empty_large({tiles, elements, row}, options).transpose(0, 1);
  }
  return empty_large({elements, tiles, row}, options);
}

std::tuple<at::Tensor, at::Tensor> backward_weight_float(const at::Tensor& grad, const at::Tensor& input) {
  const int64_t out_channels = grad.size(1);
  const int64_t in_channels = input.size(1);
  at::Tensor grad_bias = grad.sum({0, 2, 3});
  const int64_t tile = winograd_tile(input.size(0), input.size(2), input.size(3), in_channels, out_channels);
  const int64_t elements = elements_of(tile);
  const int64_t tiles = input.size(0) * tiles_along(input.size(2), tile) * tiles_along(input.size(3), tile);
  if (tiles == 0 || in_channels == 0 || out_channels == 0) {
    return {at::zeros({out_channels, in_channels, 3, 3}, grad.options()), grad_bias};
  }
  const at::Tensor x = with_contiguous_channels(input);
  const at::Tensor dy = with_contiguous_channels(grad);
  const int64_t chunk = weight_gradient_chunk(tiles, elements, in_channels, out_channels);
  // Rows padded to whole vectors of every build: the transforms store whole vectors.
  auto row_floats = [](int64_t channels) { return (channels + kRowQuantum - 1) / kRowQuantum * kRowQuantum; };
  at::Tensor v = transformed_tiles(elements, chunk, row_floats(in_channels), grad.options());
  at::Tensor w = transformed_tiles(elements, chunk, row_floats(out_channels), grad.options());
  at::Tensor grad_u = empty_large({elements, out_channels, in_channels}, grad.options());
  for (int64_t first = 0; first < tiles; first += chunk) {
    const int64_t count = std::min(chunk, tiles - first);
    MSRCNN_CPU_DISPATCH(::msrcnn::winograd_conv3x3, transform_tiles_kernel, x, dy, tile, first, count, v, w);
    const at::Tensor w_t = w.narrow(1, 0, count).narrow(2, 0, out_channels).transpose(1, 2);
    const at::Tensor v_c = v.narrow(1, 0, count).narrow(2, 0, in_channels);
    if (first == 0) {
      at::bmm_out(grad_u, w_t, v_c);
    } else {
      grad_u.baddbmm_(w_t, v_c);
    }
  }
  at::Tensor grad_weight = at::empty({out_channels, in_channels, 3, 3}, grad.options());
  MSRCNN_CPU_DISPATCH(::msrcnn::winograd_conv3x3, filter_gradient_kernel, grad_u, tile, grad_weight);
  return {grad_weight, grad_bias};
}

std::tuple<at::Tensor, at::Tensor> winograd_backward_weight(const at::Tensor& grad, const at::Tensor& input) {
  if (grad.scalar_type() == at::kFloat) {
    return backward_weight_float(grad, input);
  }
  const auto to_float = [](const at::Tensor& t) {
    return t.to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::ChannelsLast);
  };
  auto [grad_weight, grad_bias] = backward_weight_float(to_float(grad), to_float(input));
  return {grad_weight.to(grad.scalar_type()), grad_bias.to(grad.scalar_type())};
}

at::Tensor conv3x3_cpu(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       int64_t stride, bool relu) {
  const char* op = "msrcnn::conv3x3";
  check_args(input, weight, bias, stride, op);
  check_device_type(input, c10::DeviceType::CPU, op, "input");
  if (runs_winograd(input, stride)) {
    return winograd_forward(input, weight, bias, relu, /*flip=*/false, /*keep_filters=*/true);
  }
  return aten_forward(input, weight, bias, stride, relu);
}

// The backward ops' own checks: what the autograd formula passes, checked for direct callers.
void check_backward_args(const at::Tensor& grad, const at::Tensor& other, const char* other_name, int64_t stride,
                         const char* op) {
  TORCH_CHECK_VALUE(stride == 1 || stride == 2, op, ": expected stride 1 or 2, got ", stride);
  check_dim(grad, 4, op, "grad [N, Cout, Ho, Wo]");
  check_dim(other, 4, op, other_name);
  check_floating(grad, op, "grad");
  TORCH_CHECK_TYPE(
      other.scalar_type() == grad.scalar_type(), op, ": expected ", other_name, " of grad's dtype ",
      grad.scalar_type(), ", got ", other.scalar_type());
  check_device_type(grad, c10::DeviceType::CPU, op, "grad");
  check_same_device(grad, "grad", other, other_name, op);
}

at::Tensor conv3x3_backward_input_cpu(const at::Tensor& grad, const at::Tensor& weight, int64_t stride,
                                      int64_t height, int64_t width) {
  const char* op = "msrcnn::_conv3x3_backward_input";
  check_backward_args(grad, weight, "weight [Cout, Cin, 3, 3]", stride, op);
  TORCH_CHECK_VALUE(
      weight.size(0) == grad.size(1) && weight.size(2) == 3 && weight.size(3) == 3, op, ": expected weight [",
      grad.size(1), ", Cin, 3, 3], got shape ", weight.sizes());
  TORCH_CHECK_VALUE(
      height >= 0 && width >= 0 && output_size(height, stride) == grad.size(2) &&
          output_size(width, stride) == grad.size(3),
      op, ": expected grad [N, Cout, ", output_size(height, stride), ", ", output_size(width, stride),
      "] for an input of ", height, "x", width, " at stride ", stride, ", got shape ", grad.sizes());
  if (runs_winograd(grad, stride)) {
    // The transposed filters [Cin, Cout, 3, 3] (a view), rotated by the filter transform.
    return winograd_forward(grad, weight.transpose(0, 1), std::nullopt, /*relu=*/false, /*flip=*/true,
                            /*keep_filters=*/false);
  }
  return aten_backward_input(grad, weight, stride, height, width);
}

std::tuple<at::Tensor, at::Tensor> conv3x3_backward_weight_cpu(const at::Tensor& grad, const at::Tensor& input,
                                                               int64_t stride) {
  const char* op = "msrcnn::_conv3x3_backward_weight";
  check_backward_args(grad, input, "input [N, Cin, H, W]", stride, op);
  TORCH_CHECK_VALUE(
      input.size(0) == grad.size(0) && output_size(input.size(2), stride) == grad.size(2) &&
          output_size(input.size(3), stride) == grad.size(3),
      op, ": expected grad [", input.size(0), ", Cout, ", output_size(input.size(2), stride), ", ",
      output_size(input.size(3), stride), "] for input ", input.sizes(), " at stride ", stride, ", got shape ",
      grad.sizes());
  if (runs_winograd(grad, stride)) {
    return winograd_backward_weight(grad, input);
  }
  return aten_backward_weight(grad, input, stride);
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("conv3x3", &conv3x3_cpu);
  m.impl("_conv3x3_backward_input", &conv3x3_backward_input_cpu);
  m.impl("_conv3x3_backward_weight", &conv3x3_backward_weight_cpu);
}

}  // namespace msrcnn::conv3x3
