// winograd_conv3x3 CPU entry point: checks, dtype and layout choice, the filter transform,
// chunk size; the kernels are in winograd_conv3x3_cpu_kernel.cpp (per CPU capability).
//
// dtypes: float32 runs the Winograd kernels. float16 and bfloat16 run them in float32 (the
// input and weight converted, the output rounded once). float64 runs ATen's convolution:
// it is the reference precision, and Winograd's transforms would only lose digits there.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "ops/winograd_conv3x3/cpu/winograd_conv3x3_cpu_kernel.h"
#include "ops/winograd_conv3x3/winograd_conv3x3_host.h"
#include "ops/winograd_conv3x3/winograd_conv3x3_math.h"

namespace msrcnn::winograd_conv3x3 {
namespace {

// U[16][panels][Cin][16] from weight [Cout, Cin, 3, 3] float.
at::Tensor transform_filter(const at::Tensor& weight) {
  const int64_t out_channels = weight.size(0);
  const int64_t in_channels = weight.size(1);
  // The kernel reads each 3x3 filter as 9 consecutive floats.
  const bool filters_contiguous = weight.stride(3) == 1 && weight.stride(2) == 3;
  const at::Tensor filters = filters_contiguous ? weight : weight.contiguous();
  const auto shape = {int64_t{kTileElements}, panels_of(out_channels), in_channels, kPanel};
  at::Tensor packed = out_channels % kPanel == 0 ? at::empty(shape, weight.options()) : at::zeros(shape, weight.options());
  MSRCNN_CPU_DISPATCH(::msrcnn::winograd_conv3x3, transform_filter_kernel, filters, packed);
  return packed;
}

// Tiles per chunk. Two pulls (measured on a 2-core AMD EPYC, 512 KiB L2 per core, 32 MiB L3):
// a chunk's V and M (16 x tiles x (Cin + Cout) floats) should fit L2, which wants few tiles
// (64 channels: 64, 256: 16); and each chunk streams all of U (16 x Cin x Cout floats) from
// L3, which wants many where U is large (512 channels, 16 MiB: 132 tiles ran 1.25x faster
// than 24). The larger of the two wins; 256 channels are flat from 12 to 144.
int64_t tiles_per_chunk(int64_t tiles, int64_t in_channels, int64_t out_channels) {
  constexpr int64_t kScratchBytes = 512 * 1024;
  constexpr int64_t kFilterBytesPerTile = 128 * 1024;
  constexpr int64_t kRowsPerMicroTile = 6;
  const int64_t row_bytes = kTileElements * (in_channels + out_channels) * int64_t{sizeof(float)};
  const int64_t filter_bytes = kTileElements * in_channels * out_channels * int64_t{sizeof(float)};
  int64_t chunk = std::max(kScratchBytes / row_bytes, filter_bytes / kFilterBytesPerTile);
  chunk = std::clamp<int64_t>(chunk, 12, 240);
  // At least one chunk per thread.
  const int64_t threads = at::get_num_threads();
  chunk = std::min(chunk, (tiles + threads - 1) / threads);
  return (chunk + kRowsPerMicroTile - 1) / kRowsPerMicroTile * kRowsPerMicroTile;
}

at::Tensor forward_float(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         bool relu) {
  at::Tensor output = empty_output(input, weight);
  if (output.numel() == 0) {
    return output;
  }
  if (input.size(1) == 0) {
    return bias_only(output, bias, relu);
  }
  // The kernel reads channels contiguous, with any strides of N, H and W.
  const at::Tensor x = input.stride(1) == 1 ? input : input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor packed = transform_filter(weight);
  std::optional<at::Tensor> b;
  if (bias.has_value()) {
    b = bias->contiguous();
  }
  const int64_t tiles = input.size(0) * tiles_along(input.size(2)) * tiles_along(input.size(3));
  const int64_t chunk = tiles_per_chunk(tiles, input.size(1), weight.size(0));
  MSRCNN_CPU_DISPATCH(::msrcnn::winograd_conv3x3, forward_kernel, x, packed, b, relu, chunk, output);
  return output;
}

at::Tensor winograd_conv3x3_cpu(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, bool relu) {
  const char* op = "msrcnn::winograd_conv3x3";
  check_args(input, weight, bias, op);
  check_device_type(input, c10::DeviceType::CPU, op, "input");
  switch (input.scalar_type()) {
    case at::kFloat:
      return forward_float(input, weight, bias, relu);
    case at::kHalf:
    case at::kBFloat16: {
      std::optional<at::Tensor> bias_float;
      if (bias.has_value()) {
        bias_float = bias->to(at::kFloat);
      }
      const at::Tensor x = input.to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::ChannelsLast);
      return forward_float(x, weight.to(at::kFloat), bias_float, relu)
          .to(input.scalar_type(), /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::ChannelsLast);
    }
    default:
      return aten_conv3x3(input, weight, bias, relu);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("winograd_conv3x3", &winograd_conv3x3_cpu);
}

}  // namespace msrcnn::winograd_conv3x3
