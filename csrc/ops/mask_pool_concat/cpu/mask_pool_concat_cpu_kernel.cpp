// mask_pool_concat CPU kernels over mask_pool_concat_math.h. Compiled once per CPU
// capability up to AVX2: CPU_CAPABILITY is DEFAULT or AVX2 (see setup.py: the AVX512 build
// measured 4x slower in the 81-class backward), at::vec::Vectorized follows it.
//
// Per RoI: the pooled masks (one window max and one sigmoid per pooled value) are computed
// once, then the feature planes are copied (concat modes) or scaled (multiply) with whole
// planes at a time. Backward writes each RoI's block of grad_mask_logits in one pass: zeros,
// and the gradient at each window's maximum.

#include "ops/mask_pool_concat/cpu/mask_pool_concat_cpu_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

// The non-temporal stores below are 256-bit AVX code, for the AVX2 build.
#if defined(CPU_CAPABILITY_AVX2)
#define MSRCNN_STREAMING_STORES 1
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace msrcnn::mask_pool_concat::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// RoIs per parallel task: one RoI already moves ~50 KB of features at C = 256.
constexpr int64_t kRoIsPerTask = 1;

// pooled[p] = sigmoid(max of window p) for every window of class k of RoI n.
template <typename scalar_t, typename T>
void pool_class(const Args<scalar_t>& a, int64_t n, int64_t k, T* pooled) {
  const Geometry& g = a.geometry;
  for (int64_t i = 0; i < g.height; ++i) {
    for (int64_t j = 0; j < g.width; ++j) {
      pooled[i * g.width + j] = pooled_mask<scalar_t, T>(a.logits, n, k, i, j, g);
    }
  }
}

// dst = src, `count` elements. The concat modes' copy of the features is most of their cost
// and its output (~26 MB at 128 RoIs x 256 channels) does not stay in cache: float32 is
// written with non-temporal stores in the AVX2 build, which skips reading each
// destination line before writing it (measured 1.3x faster than memcpy on 50 KB blocks,
// 2-core AVX2 EPYC).
template <typename scalar_t>
void copy_features(const scalar_t* src, int64_t count, scalar_t* dst) {
#if defined(MSRCNN_STREAMING_STORES)
  if constexpr (std::is_same_v<scalar_t, float>) {
    int64_t i = 0;
    for (; i < count && (reinterpret_cast<uintptr_t>(dst + i) & 31) != 0; ++i) {
      dst[i] = src[i];
    }
    for (; i + 8 <= count; i += 8) {
      _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
    }
    for (; i < count; ++i) {
      dst[i] = src[i];
    }
    return;
  }
#endif
  std::memcpy(dst, src, sizeof(scalar_t) * count);
}

// dst = 0, `count` elements: the mask gradient's unselected classes (~32 MB at 81 classes),
// with non-temporal stores in the AVX2 build, as copy_features.
template <typename scalar_t>
void zero_fill(int64_t count, scalar_t* dst) {
#if defined(MSRCNN_STREAMING_STORES)
  if constexpr (std::is_same_v<scalar_t, float>) {
    int64_t i = 0;
    for (; i < count && (reinterpret_cast<uintptr_t>(dst + i) & 31) != 0; ++i) {
      dst[i] = 0;
    }
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= count; i += 8) {
      _mm256_stream_ps(dst + i, zero);
    }
    for (; i < count; ++i) {
      dst[i] = 0;
    }
    return;
  }
#endif
  std::fill(dst, dst + count, static_cast<scalar_t>(0));
}

// dst[r][p] = src[r][p] * scale[p] for `rows` planes of `plane` elements.
template <typename scalar_t, typename T>
void scale_planes(const scalar_t* src, const T* scale, int64_t rows, int64_t plane, scalar_t* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* s = src + r * plane;
    scalar_t* d = dst + r * plane;
    int64_t p = 0;
    if constexpr (std::is_same_v<scalar_t, T>) {
      constexpr int64_t V = Vectorized<T>::size();
      for (; p + V <= plane; p += V) {
        (Vectorized<T>::loadu(s + p) * Vectorized<T>::loadu(scale + p)).store(d + p);
      }
    }
    for (; p < plane; ++p) {
      d[p] = static_cast<scalar_t>(static_cast<T>(s[p]) * scale[p]);
    }
  }
}

// acc[p] = sum over rows r of a[r][p] * b[r][p] (the multiply mode's gradient of the mask).
template <typename scalar_t, typename T>
void sum_of_products(const scalar_t* a, const scalar_t* b, int64_t rows, int64_t plane, T* acc) {
  std::fill(acc, acc + plane, static_cast<T>(0));
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* x = a + r * plane;
    const scalar_t* y = b + r * plane;
    int64_t p = 0;
    if constexpr (std::is_same_v<scalar_t, T>) {
      constexpr int64_t V = Vectorized<T>::size();
      for (; p + V <= plane; p += V) {
        at::vec::fmadd(Vectorized<T>::loadu(x + p), Vectorized<T>::loadu(y + p), Vectorized<T>::loadu(acc + p))
            .store(acc + p);
      }
    }
    for (; p < plane; ++p) {
      acc[p] += static_cast<T>(x[p]) * static_cast<T>(y[p]);
    }
  }
}

template <typename scalar_t>
void forward_typed(const Geometry& g, const Inputs& in, at::Tensor& output) {
  using T = at::opmath_type<scalar_t>;
  const Args<scalar_t> a = make_args<scalar_t>(g, in);
  const int64_t plane = g.height * g.width;
  const int64_t out_channels = output_channels(g);
  const int64_t pooled_classes = g.mode == Mode::ConcatAll ? g.classes : 1;
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, g.rois, kRoIsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<T> pooled(pooled_classes * plane);
    for (int64_t n = begin; n < end; ++n) {
      if (g.mode == Mode::ConcatAll) {
        for (int64_t k = 0; k < g.classes; ++k) {
          pool_class(a, n, k, pooled.data() + k * plane);
        }
      } else {
        pool_class(a, n, selected_class(a.labels, n, g.classes), pooled.data());
      }
      const scalar_t* features = a.features + n * g.channels * plane;
      scalar_t* out_n = out + n * out_channels * plane;
      if (g.mode == Mode::Multiply) {
        scale_planes(features, pooled.data(), g.channels, plane, out_n);
        continue;
      }
      copy_features(features, g.channels * plane, out_n);
      scalar_t* masks = out_n + g.channels * plane;
      for (int64_t p = 0; p < pooled_classes * plane; ++p) {
        masks[p] = static_cast<scalar_t>(pooled[p]);
      }
    }
#if defined(MSRCNN_STREAMING_STORES)
    _mm_sfence();  // order the non-temporal stores before the output is handed on
#endif
  });
}

template <typename scalar_t>
void logits_backward_typed(const Geometry& g, const Inputs& in, at::Tensor& grad_logits) {
  using T = at::opmath_type<scalar_t>;
  const Args<scalar_t> a = make_args<scalar_t>(g, in);
  const int64_t plane = g.height * g.width;
  const int64_t mask_plane = g.mask_height * g.mask_width;
  const int64_t out_channels = output_channels(g);
  scalar_t* out = grad_logits.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, g.rois, kRoIsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<T> grad_pooled(plane);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t selected = g.mode == Mode::ConcatAll ? -1 : selected_class(a.labels, n, g.classes);
      if (g.mode == Mode::Multiply) {
        sum_of_products(a.grad + n * out_channels * plane, a.features + n * g.channels * plane, g.channels, plane,
                        grad_pooled.data());
      }
      for (int64_t k = 0; k < g.classes; ++k) {
        scalar_t* dst = out + (n * g.classes + k) * mask_plane;
        if (g.mode != Mode::ConcatAll && k != selected) {
          zero_fill(mask_plane, dst);
          continue;
        }
        std::fill(dst, dst + mask_plane, static_cast<scalar_t>(0));
        const scalar_t* logits = a.logits + (n * g.classes + k) * mask_plane;
        const int64_t grad_channel = g.mode == Mode::ConcatAll ? g.channels + k : g.channels;
        const scalar_t* grad = a.grad + (n * out_channels + grad_channel) * plane;
        for (int64_t p = 0; p < plane; ++p) {
          const WindowMax<T> best = window_max<scalar_t, T>(logits, p / g.width, p % g.width, g);
          const T incoming = g.mode == Mode::Multiply ? grad_pooled[p] : static_cast<T>(grad[p]);
          dst[best.offset] = static_cast<scalar_t>(sigmoid_backward(incoming, sigmoid(best.value)));
        }
      }
    }
#if defined(MSRCNN_STREAMING_STORES)
    _mm_sfence();
#endif
  });
}

template <typename scalar_t>
void multiply_features_backward_typed(const Geometry& g, const Inputs& in, at::Tensor& grad_features) {
  using T = at::opmath_type<scalar_t>;
  const Args<scalar_t> a = make_args<scalar_t>(g, in);
  const int64_t plane = g.height * g.width;
  scalar_t* out = grad_features.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, g.rois, kRoIsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<T> pooled(plane);
    for (int64_t n = begin; n < end; ++n) {
      pool_class(a, n, selected_class(a.labels, n, g.classes), pooled.data());
      scale_planes(a.grad + n * g.channels * plane, pooled.data(), g.channels, plane, out + n * g.channels * plane);
    }
  });
}

}  // namespace

void forward_kernel(const Geometry& geometry, const Inputs& inputs, at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "mask_pool_concat_cpu", [&] {
    forward_typed<scalar_t>(geometry, inputs, output);
  });
}

void logits_backward_kernel(const Geometry& geometry, const Inputs& inputs, at::Tensor& grad_logits) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_logits.scalar_type(), "mask_pool_concat_backward_cpu",
      [&] { logits_backward_typed<scalar_t>(geometry, inputs, grad_logits); });
}

void multiply_features_backward_kernel(const Geometry& geometry, const Inputs& inputs, at::Tensor& grad_features) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_features.scalar_type(), "mask_pool_multiply_features_backward_cpu",
      [&] { multiply_features_backward_typed<scalar_t>(geometry, inputs, grad_features); });
}

}  // namespace msrcnn::mask_pool_concat::CPU_CAPABILITY

#undef MSRCNN_STREAMING_STORES
