#pragma once

// mask_pool_concat's per-element math: the ONLY copy, used by the CPU kernels, the CUDA
// kernels and the CPU element-by-element test build.
//
// The MaskIoU head's input (MS R-CNN, Fig. 3 and Table 4): one class's mask logits
// [M_h, M_w] per RoI, sigmoid, max-pooled with a window of (M_h / S_h, M_w / S_w) to the
// RoI features' size [S_h, S_w], then
//   Concat    (Table 4a): cat(roi_features, pooled)            -> [N, C + 1, S_h, S_w]
//   Multiply  (Table 4b): roi_features * pooled                -> [N, C, S_h, S_w]
//   ConcatAll (Table 4c): cat(roi_features, pooled of every class) -> [N, C + K, S_h, S_w]
// Sigmoid is monotonic, so max_pool(sigmoid(x)) = sigmoid(max_pool(x)): one sigmoid per
// pooled value. The max is max_pool2d's: first maximum in row-major order, NaN wins.

#include "common/macros.h"

#include <math.h>
#include <stdint.h>

namespace msrcnn::mask_pool_concat {

enum class Mode : int { Concat = 0, Multiply = 1, ConcatAll = 2 };

struct Geometry {
  int64_t rois;      // N
  int64_t channels;  // C, channels of roi_features
  int64_t classes;   // K, channels of mask_logits
  int64_t height;    // S_h, S_w: the RoI features' (and the output's) spatial size
  int64_t width;
  int64_t mask_height;  // M_h, M_w: the mask logits' spatial size
  int64_t mask_width;
  Mode mode;
};

HOST_DEVICE_INLINE int64_t output_channels(const Geometry& g) {
  return g.mode == Mode::Concat ? g.channels + 1 : (g.mode == Mode::Multiply ? g.channels : g.channels + g.classes);
}

HOST_DEVICE_INLINE int64_t window_height(const Geometry& g) { return g.mask_height / g.height; }
HOST_DEVICE_INLINE int64_t window_width(const Geometry& g) { return g.mask_width / g.width; }

HOST_DEVICE_INLINE float math_exp(float x) { return expf(x); }
HOST_DEVICE_INLINE double math_exp(double x) { return exp(x); }

template <typename T>
HOST_DEVICE_INLINE T sigmoid(T x) {
  return static_cast<T>(1) / (static_cast<T>(1) + math_exp(-x));
}

// d sigmoid / dx at sigmoid value s, times the incoming gradient (ATen's sigmoid_backward order).
template <typename T>
HOST_DEVICE_INLINE T sigmoid_backward(T grad, T s) {
  return grad * (static_cast<T>(1) - s) * s;
}

// The mask channel RoI n pools in the single-class modes: its label, or 0 when mask_logits
// holds one channel (already selected). -1 for a label outside [0, K): the entry points
// reject those before any kernel runs (CPU) or assert in the kernel (CUDA).
HOST_DEVICE_INLINE int64_t selected_class(const int64_t* labels, int64_t n, int64_t classes) {
  if (classes == 1) {
    return 0;
  }
  const int64_t label = labels[n];
  return (label >= 0 && label < classes) ? label : -1;
}

// Maximum of one pooling window and where it is (offset in the [M_h, M_w] plane).
template <typename T>
struct WindowMax {
  T value;
  int64_t offset;
};

template <typename scalar_t, typename T>
HOST_DEVICE_INLINE WindowMax<T> window_max(const scalar_t* plane, int64_t i, int64_t j, const Geometry& g) {
  const int64_t kh = window_height(g);
  const int64_t kw = window_width(g);
  WindowMax<T> best{static_cast<T>(plane[i * kh * g.mask_width + j * kw]), i * kh * g.mask_width + j * kw};
  for (int64_t dy = 0; dy < kh; ++dy) {
    for (int64_t dx = 0; dx < kw; ++dx) {
      const int64_t offset = (i * kh + dy) * g.mask_width + j * kw + dx;
      const T v = static_cast<T>(plane[offset]);
      if (v > best.value || v != v) {
        best.value = v;
        best.offset = offset;
      }
    }
  }
  return best;
}

// sigmoid(max of window (i, j)) of class k of RoI n.
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T pooled_mask(
    const scalar_t* logits, int64_t n, int64_t k, int64_t i, int64_t j, const Geometry& g) {
  const scalar_t* plane = logits + (n * g.classes + k) * g.mask_height * g.mask_width;
  return sigmoid(window_max<scalar_t, T>(plane, i, j, g).value);
}

// ---------------------------------------------------------------------------------------
// Element bodies: one element of an output as a function of its flat index. The CUDA
// kernels run one thread per index; the CPU test build runs the same bodies in a loop.
// All tensors are contiguous.

template <typename scalar_t>
struct Args {
  Geometry geometry;
  const scalar_t* features;  // [N, C, S_h, S_w]; null in backward of the concat modes
  const scalar_t* logits;    // [N, K, M_h, M_w]
  const int64_t* labels;     // [N]; null when K == 1 or in ConcatAll
  const scalar_t* grad;      // [N, output_channels, S_h, S_w] (backward only)
};

// Element `index` of the output [N, output_channels, S_h, S_w].
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T forward_element(int64_t index, const Args<scalar_t>& a) {
  const Geometry& g = a.geometry;
  const int64_t j = index % g.width;
  const int64_t i = (index / g.width) % g.height;
  const int64_t c = (index / g.width / g.height) % output_channels(g);
  const int64_t n = index / g.width / g.height / output_channels(g);
  const int64_t feature = ((n * g.channels + c) * g.height + i) * g.width + j;
  switch (g.mode) {
    case Mode::Multiply:
      return static_cast<T>(a.features[feature]) *
          pooled_mask<scalar_t, T>(a.logits, n, selected_class(a.labels, n, g.classes), i, j, g);
    case Mode::ConcatAll:
      return c < g.channels ? static_cast<T>(a.features[feature])
                            : pooled_mask<scalar_t, T>(a.logits, n, c - g.channels, i, j, g);
    default:
      return c < g.channels ? static_cast<T>(a.features[feature])
                            : pooled_mask<scalar_t, T>(a.logits, n, selected_class(a.labels, n, g.classes), i, j, g);
  }
}

// d loss / d pooled value (i, j) of class k of RoI n (before the sigmoid's derivative).
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T grad_of_pooled(int64_t n, int64_t k, int64_t i, int64_t j, const Args<scalar_t>& a) {
  const Geometry& g = a.geometry;
  const int64_t plane = g.height * g.width;
  const int64_t out_channels = output_channels(g);
  if (g.mode == Mode::Multiply) {
    // pooled scales every channel: sum over channels of grad * feature.
    T sum = 0;
    for (int64_t c = 0; c < g.channels; ++c) {
      sum += static_cast<T>(a.grad[(n * out_channels + c) * plane + i * g.width + j]) *
          static_cast<T>(a.features[(n * g.channels + c) * plane + i * g.width + j]);
    }
    return sum;
  }
  const int64_t c = g.mode == Mode::ConcatAll ? g.channels + k : g.channels;
  return static_cast<T>(a.grad[(n * out_channels + c) * plane + i * g.width + j]);
}

// Element `index` of grad_mask_logits [N, K, M_h, M_w]: non-zero only at the maximum of a
// pooling window of a pooled class.
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T logits_backward_element(int64_t index, const Args<scalar_t>& a) {
  const Geometry& g = a.geometry;
  const int64_t x = index % g.mask_width;
  const int64_t y = (index / g.mask_width) % g.mask_height;
  const int64_t k = (index / g.mask_width / g.mask_height) % g.classes;
  const int64_t n = index / g.mask_width / g.mask_height / g.classes;
  if (g.mode != Mode::ConcatAll && k != selected_class(a.labels, n, g.classes)) {
    return static_cast<T>(0);
  }
  const int64_t i = y / window_height(g);
  const int64_t j = x / window_width(g);
  if (i >= g.height || j >= g.width) {
    return static_cast<T>(0);
  }
  const scalar_t* plane = a.logits + (n * g.classes + k) * g.mask_height * g.mask_width;
  const WindowMax<T> best = window_max<scalar_t, T>(plane, i, j, g);
  if (best.offset != y * g.mask_width + x) {
    return static_cast<T>(0);
  }
  return sigmoid_backward(grad_of_pooled<scalar_t, T>(n, k, i, j, a), sigmoid(best.value));
}

// Element `index` of grad_roi_features [N, C, S_h, S_w] in Multiply mode (the concat modes'
// is a slice of grad).
template <typename scalar_t, typename T>
HOST_DEVICE_INLINE T multiply_features_backward_element(int64_t index, const Args<scalar_t>& a) {
  const Geometry& g = a.geometry;
  const int64_t j = index % g.width;
  const int64_t i = (index / g.width) % g.height;
  const int64_t n = index / g.width / g.height / g.channels;
  return static_cast<T>(a.grad[index]) *
      pooled_mask<scalar_t, T>(a.logits, n, selected_class(a.labels, n, g.classes), i, j, g);
}

}  // namespace msrcnn::mask_pool_concat
