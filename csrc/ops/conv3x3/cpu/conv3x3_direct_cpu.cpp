// conv3x3 at stride 1 as one GEMM: columns [N*H*W, 9*Cin] (tap-major: ky, kx, then ci) of the
// zero-padded input, times the filters as a [Cout, 9*Cin] matrix (a channels-last weight is
// that matrix already). The input gradient is the forward with the rotated, transposed filters.

#include "ops/conv3x3/cpu/conv3x3_direct_cpu.h"

#include <ATen/Parallel.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>

#include <algorithm>
#include <cstring>

namespace msrcnn::conv3x3 {
namespace {

// cols[p, (3 ky + kx) Cin + ci] = input[n, ci, y + ky - 1, x + kx - 1] (0 outside the map) for
// the pixel p = (n, y, x), numbered row-major.
at::Tensor im2col(const at::Tensor& input) {
  const int64_t batch = input.size(0), channels = input.size(1), height = input.size(2), width = input.size(3);
  const int64_t sn = input.stride(0), sh = input.stride(2), sw = input.stride(3);
  const int64_t pixels = batch * height * width;
  at::Tensor cols = at::empty({pixels, 9 * channels}, input.options());
  const float* in = input.const_data_ptr<float>();
  float* out = cols.mutable_data_ptr<float>();
  const size_t row_bytes = static_cast<size_t>(channels) * sizeof(float);
  at::parallel_for(0, pixels, std::max<int64_t>(1, 16384 / (9 * channels)), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / (height * width);
      const int64_t y = (p / width) % height;
      const int64_t x = p % width;
      float* dst = out + p * 9 * channels;
      for (int k = 0; k < 9; ++k) {
        const int64_t sy = y + k / 3 - 1;
        const int64_t sx = x + k % 3 - 1;
        if (sy >= 0 && sy < height && sx >= 0 && sx < width) {
          std::memcpy(dst + k * channels, in + n * sn + sy * sh + sx * sw, row_bytes);
        } else {
          std::memset(dst + k * channels, 0, row_bytes);
        }
      }
    }
  });
  return cols;
}

// The [Cout, 9*Cin] filter matrix (tap-major columns), filters rotated by 180° if `flip`.
at::Tensor filter_matrix(const at::Tensor& weight, bool flip) {
  const at::Tensor filters = flip ? weight.flip({2, 3}) : weight;
  return filters.permute({0, 2, 3, 1}).reshape({weight.size(0), 9 * weight.size(1)});
}

}  // namespace

void direct_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    bool relu, bool flip, at::Tensor& output) {
  const int64_t out_channels = weight.size(0);
  const at::Tensor cols = im2col(input);
  const at::Tensor filters = filter_matrix(weight, flip);
  // output [N, Cout, H, W] channels-last is the [N*H*W, Cout] product's memory.
  at::Tensor product = output.permute({0, 2, 3, 1}).view({-1, out_channels});
  if (bias.has_value()) {
    at::addmm_out(product, *bias, cols, filters.t());
  } else {
    at::mm_out(product, cols, filters.t());
  }
  if (relu) {
    product.clamp_min_(0.0);
  }
}

at::Tensor direct_backward_weight(const at::Tensor& grad, const at::Tensor& input) {
  const int64_t out_channels = grad.size(1);
  const int64_t in_channels = input.size(1);
  const at::Tensor cols = im2col(input);
  const at::Tensor g = grad.permute({0, 2, 3, 1}).reshape({-1, out_channels});  // [N*H*W, Cout]
  const at::Tensor product = at::mm(g.t(), cols);                                // [Cout, 9*Cin]
  return product.view({out_channels, 3, 3, in_channels}).permute({0, 3, 1, 2}).contiguous();
}

}  // namespace msrcnn::conv3x3
