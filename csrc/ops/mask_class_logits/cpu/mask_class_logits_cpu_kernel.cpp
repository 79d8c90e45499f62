// mask_class_logits CPU kernel over mask_class_logits_math.h's definition. Compiled once per CPU
// capability: CPU_CAPABILITY is DEFAULT, AVX2 or AVX512 (see setup.py), and at::vec::Vectorized
// follows it.
//
// The transposed convolution is one GEMM ([N * H * W, Cin] x [Cin, 4C]); it is run in blocks of
// at most kRows rows of one RoI, into a per-thread buffer that stays in cache, and each row's
// four 2x2 output positions are reduced at once to the RoI's class logit: ReLU(product + bias)
// dotted with the class's weights. The [N, C, 2H, 2W] features are never written (for 100 RoIs
// of 256 channels at 14 x 14, 80 MB that the unfused path writes, faults in and reads back).
// bfloat16 rows and columns (output float): the GEMM in bfloat16, each block widened to float.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm_cpu_dispatch.h>

#include <algorithm>
#include <type_traits>

#include "ops/mask_class_logits/cpu/mask_class_logits_cpu_kernel.h"
#include "ops/mask_class_logits/mask_class_logits_math.h"

namespace msrcnn::mask_class_logits::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// GEMM rows per block (a RoI of 14 x 14 is one block): its 4C products per row (1 MB at 256 rows,
// C = 256, float) stay in cache. Fewer rows slowed MKL's GEMM: 100 x 256 x 14 x 14 took 66 ms in
// blocks of 64 rows, 62.5 of 128, 58 of 196 (2-core AVX2 EPYC).
constexpr int64_t kRows = 256;

// sums[q] = sum_c weight[c] * relu(pre[q * C + c] + bias[c]), q < 4: the row's 2x2 positions.
template <typename T>
void relu_dots(const T* pre, const T* bias, const T* weight, int64_t channels, T* sums) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const Vec zero(T(0));
  Vec acc[4] = {zero, zero, zero, zero};
  int64_t c = 0;
  for (; c + V <= channels; c += V) {
    const Vec w = Vec::loadu(weight + c);
    const Vec b = Vec::loadu(bias + c);
    for (int q = 0; q < 4; ++q) {
      acc[q] = at::vec::fmadd(w, at::vec::maximum(Vec::loadu(pre + q * channels + c) + b, zero), acc[q]);
    }
  }
  for (int q = 0; q < 4; ++q) {
    T sum = at::vec::vec_reduce_all<T>([](Vec& x, Vec& y) { return x + y; }, acc[q]);
    for (int64_t k = c; k < channels; ++k) {
      sum += weight[k] * relu(pre[q * channels + k] + bias[k]);
    }
    sums[q] = sum;
  }
}

template <typename T>
void logits(const at::Tensor& rows, const at::Tensor& columns, const at::Tensor& deconv_bias,
            const at::Tensor& class_weight, const at::Tensor& class_bias, int64_t height, int64_t width,
            at::Tensor& output) {
  const int64_t cells = height * width;
  const int64_t channels = deconv_bias.size(0);
  const int64_t rois = output.size(0);
  const int64_t blocks_per_roi = (cells + kRows - 1) / kRows;
  const T* bias = deconv_bias.const_data_ptr<T>();
  const T* class_w = class_weight.const_data_ptr<T>();
  const T* class_b = class_bias.const_data_ptr<T>();
  T* out = output.mutable_data_ptr<T>();
  // bfloat16 GEMM operands (T float): each block's product is widened to float for the rest
  const bool widen = rows.scalar_type() != output.scalar_type();
  at::parallel_for(0, rois * blocks_per_roi, 1, [&](int64_t begin, int64_t end) {
    at::Tensor buffer = at::empty({kRows, 4 * channels}, rows.options());
    at::Tensor widened = widen ? at::empty({kRows, 4 * channels}, output.options()) : buffer;
    const T* pre = widened.const_data_ptr<T>();
    for (int64_t block = begin; block < end; ++block) {
      const int64_t n = block / blocks_per_roi;
      const int64_t first = (block % blocks_per_roi) * kRows;
      const int64_t count = std::min(kRows, cells - first);
      at::Tensor product = buffer.narrow(0, 0, count);
      // The CPU kernel itself, not the dispatcher: worker threads do not inherit the caller's
      // grad mode and dispatch keys.
      at::cpu::mm_out(product, rows.narrow(0, n * cells + first, count), columns);
      if constexpr (std::is_same_v<T, float>) {
        if (widen) {
          at::vec::convert(buffer.const_data_ptr<at::BFloat16>(), widened.mutable_data_ptr<float>(),
                           count * 4 * channels);
        }
      }
      T* out_n = out + n * 4 * cells;
      for (int64_t r = 0; r < count; ++r) {
        const int64_t cell = first + r;
        const int64_t y = cell / width;
        const int64_t xx = cell % width;
        T sums[4];
        relu_dots(pre + r * 4 * channels, bias, class_w + n * channels, channels, sums);
        T* top = out_n + (2 * y) * (2 * width) + 2 * xx;
        top[0] = sums[0] + class_b[n];
        top[1] = sums[1] + class_b[n];
        top[2 * width] = sums[2] + class_b[n];
        top[2 * width + 1] = sums[3] + class_b[n];
      }
    }
  });
}

}  // namespace

void logits_kernel(const at::Tensor& rows, const at::Tensor& columns, const at::Tensor& deconv_bias,
                   const at::Tensor& class_weight, const at::Tensor& class_bias, int64_t height, int64_t width,
                   at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES(output.scalar_type(), "mask_class_logits_cpu", [&] {
    logits<scalar_t>(rows, columns, deconv_bias, class_weight, class_bias, height, width, output);
  });
}

}  // namespace msrcnn::mask_class_logits::CPU_CAPABILITY
