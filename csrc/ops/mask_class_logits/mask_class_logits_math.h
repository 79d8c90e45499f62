#pragma once

// mask_class_logits, per output element: the only copy of the math the CUDA kernel runs (the
// CPU kernel vectorises the same sum over channels).
//
// logits[n, 0, 2y + i, 2x + j] = class_bias[n]
//     + sum_c class_weight[n, c] * relu(deconv_bias[c] + pre[n, y, x, i, j, c])
// where pre[n, y, x, i, j, c] = sum_k features[n, k, y, x] * deconv_weight[k, c, i, j], the
// transposed convolution's product before its bias (one GEMM of the channels-last features
// [N * H * W, Cin] by the weight as [Cin, (i, j, c)]).

#include <cstdint>

#include "common/macros.h"

namespace msrcnn::mask_class_logits {

template <typename scalar_t, typename T>
struct Args {
  const scalar_t* pre;           // [N, H, W, 2, 2, C]
  const scalar_t* deconv_bias;   // [C]
  const scalar_t* class_weight;  // [N, C]
  const scalar_t* class_bias;    // [N]
  int64_t height;                // H, of the features
  int64_t width;                 // W
  int64_t channels;              // C, the transposed convolution's output channels
};

// ReLU that keeps NaN, as torch.relu.
template <typename T>
HOST_DEVICE_INLINE T relu(T v) {
  return v < T(0) ? T(0) : v;
}

// Logit i of the contiguous [N, 1, 2H, 2W] output.
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T logit_element(int64_t i, const Args<scalar_t, T>& a) {
  const int64_t out_w = 2 * a.width;
  const int64_t out_h = 2 * a.height;
  const int64_t ox = i % out_w;
  const int64_t oy = (i / out_w) % out_h;
  const int64_t n = i / (out_w * out_h);
  const int64_t cell = (n * a.height + oy / 2) * a.width + ox / 2;
  const int64_t c = a.channels;
  const scalar_t* row = a.pre + (cell * 4 + (oy % 2) * 2 + ox % 2) * c;
  const scalar_t* weight = a.class_weight + n * c;
  T sum = T(0);
  for (int64_t k = 0; k < c; ++k) {
    sum += static_cast<T>(weight[k]) * relu(static_cast<T>(row[k]) + static_cast<T>(a.deconv_bias[k]));
  }
  return sum + static_cast<T>(a.class_bias[n]);
}

}  // namespace msrcnn::mask_class_logits
