#pragma once

// group_norm_relu's per-element math (the CUDA kernels' element bodies; the CPU kernels compute
// the same with vectors). For element x of channel c in group g of image n:
//   y = relu?((x - mean[n, g]) * rstd[n, g] * weight[c] + bias[c])
// and, with g' = grad (zero where relu and y <= 0), over the group's `count` elements
//   M1 = sum(weight g') / count, M2 = rstd sum(weight g' (x - mean)) / count,
//   grad_input = rstd weight g' - rstd M1 - rstd^2 M2 (x - mean).

#include "common/macros.h"

namespace msrcnn::group_norm_relu {

template <typename T>
HOST_DEVICE_INLINE T normalized(T x, T mean, T rstd, T weight, T bias, bool relu) {
  const T y = (x - mean) * (rstd * weight) + bias;
  return relu && !(y > T(0)) ? T(0) : y;
}

// grad where the ReLU passed it (y > 0), else 0; grad itself without the ReLU.
template <typename T>
HOST_DEVICE_INLINE T masked_grad(T grad, T y, bool relu) {
  return relu && !(y > T(0)) ? T(0) : grad;
}

template <typename T>
HOST_DEVICE_INLINE T input_grad(T masked, T x, T mean, T rstd, T weight, T m1, T m2) {
  return rstd * weight * masked - rstd * m1 - rstd * rstd * m2 * (x - mean);
}

}  // namespace msrcnn::group_norm_relu
