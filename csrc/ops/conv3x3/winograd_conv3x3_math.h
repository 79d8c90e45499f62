#pragma once

// Winograd F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
// 2016): a 2x2 block of a stride-1 3x3 cross-correlation (what conv2d computes) from a 4x4
// input patch d and a 3x3 filter g as
//
//     Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise, 16 products instead of 36)
//
//   B^T = | 1  0 -1  0 |     G = |  1    0    0  |     A^T = | 1  1  1  0 |
//         | 0  1  1  0 |         | 1/2  1/2  1/2 |           | 0  1 -1 -1 |
//         | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |         |  0    0    1  |
//
// Summed over input channels, the elementwise products become 16 matrix products
// M[xi] = V[xi] U[xi] (tiles x Cin times Cin x Cout), one per position xi = 4 * row + col of
// the 4x4 transformed tile: that is where the speed comes from.
//
// The transforms are written for any T with +, - (and * for the filter): float or double one
// element at a time, or at::vec::Vectorized<float> for 8 (or 16) channels at once. Arrays are
// row-major: d[4 * row + col], g[3 * row + col], y[2 * row + col].
//
// Rounding: B^T and A^T are sums of +-1 entries (exact up to the additions' rounding, at
// most 4 terms of the input's magnitude); G's halves are exact in binary. The float32 error
// of a result therefore scales with the sizes of the transformed terms, a few times the
// direct sum's (see tests/ops/test_winograd_conv3x3.py).

#include "common/macros.h"

namespace msrcnn::winograd_conv3x3 {

// Outputs per tile side, input patch side, and transformed tile elements.
constexpr int kTileOut = 2;
constexpr int kTileIn = 4;
constexpr int kTileElements = kTileIn * kTileIn;

// v = B^T d B.
template <typename T>
HOST_DEVICE_INLINE void input_transform(const T* d, T* v) {
  T t[kTileElements];
  for (int c = 0; c < 4; ++c) {  // columns of B^T d
    t[0 * 4 + c] = d[0 * 4 + c] - d[2 * 4 + c];
    t[1 * 4 + c] = d[1 * 4 + c] + d[2 * 4 + c];
    t[2 * 4 + c] = d[2 * 4 + c] - d[1 * 4 + c];
    t[3 * 4 + c] = d[1 * 4 + c] - d[3 * 4 + c];
  }
  for (int r = 0; r < 4; ++r) {  // rows of (B^T d) B
    v[r * 4 + 0] = t[r * 4 + 0] - t[r * 4 + 2];
    v[r * 4 + 1] = t[r * 4 + 1] + t[r * 4 + 2];
    v[r * 4 + 2] = t[r * 4 + 2] - t[r * 4 + 1];
    v[r * 4 + 3] = t[r * 4 + 1] - t[r * 4 + 3];
  }
}

// u = G g G^T.
template <typename T>
HOST_DEVICE_INLINE void filter_transform(const T* g, T* u) {
  const T half(0.5f);
  T s[4 * 3];
  for (int c = 0; c < 3; ++c) {  // columns of G g
    s[0 * 3 + c] = g[0 * 3 + c];
    s[1 * 3 + c] = (g[0 * 3 + c] + g[1 * 3 + c] + g[2 * 3 + c]) * half;
    s[2 * 3 + c] = (g[0 * 3 + c] - g[1 * 3 + c] + g[2 * 3 + c]) * half;
    s[3 * 3 + c] = g[2 * 3 + c];
  }
  for (int r = 0; r < 4; ++r) {  // rows of (G g) G^T
    u[r * 4 + 0] = s[r * 3 + 0];
    u[r * 4 + 1] = (s[r * 3 + 0] + s[r * 3 + 1] + s[r * 3 + 2]) * half;
    u[r * 4 + 2] = (s[r * 3 + 0] - s[r * 3 + 1] + s[r * 3 + 2]) * half;
    u[r * 4 + 3] = s[r * 3 + 2];
  }
}

// y = A^T m A: the 2x2 outputs of one tile from its 16 channel-summed products.
template <typename T>
HOST_DEVICE_INLINE void output_transform(const T* m, T* y) {
  T t[2 * 4];
  for (int c = 0; c < 4; ++c) {  // columns of A^T m
    t[0 * 4 + c] = m[0 * 4 + c] + m[1 * 4 + c] + m[2 * 4 + c];
    t[1 * 4 + c] = m[1 * 4 + c] - m[2 * 4 + c] - m[3 * 4 + c];
  }
  for (int r = 0; r < 2; ++r) {  // rows of (A^T m) A
    y[r * 2 + 0] = t[r * 4 + 0] + t[r * 4 + 1] + t[r * 4 + 2];
    y[r * 2 + 1] = t[r * 4 + 1] - t[r * 4 + 2] - t[r * 4 + 3];
  }
}

// The weight gradient runs the same algorithm backwards. With M[xi] = sum over input channels
// of U[xi] V[xi] and Y = A^T M A, the gradient of U (for one output and one input channel) is
// the sum over tiles of (A dY A^T) * (B^T d B), and the filter's gradient is G^T dU G: the
// adjoints of output_transform and filter_transform, below. The sums over tiles are 16 matrix
// products again (Cout x tiles times tiles x Cin).

// w = A dy A^T: a tile's 2x2 output gradient dy spread over the 16 transformed positions (the
// adjoint of output_transform).
template <typename T>
HOST_DEVICE_INLINE void output_gradient_transform(const T* dy, T* w) {
  T s[4 * 2];
  for (int c = 0; c < 2; ++c) {  // columns of A dy
    s[0 * 2 + c] = dy[0 * 2 + c];
    s[1 * 2 + c] = dy[0 * 2 + c] + dy[1 * 2 + c];
    s[2 * 2 + c] = dy[0 * 2 + c] - dy[1 * 2 + c];
    s[3 * 2 + c] = T(0.0f) - dy[1 * 2 + c];
  }
  for (int r = 0; r < 4; ++r) {  // rows of (A dy) A^T
    w[r * 4 + 0] = s[r * 2 + 0];
    w[r * 4 + 1] = s[r * 2 + 0] + s[r * 2 + 1];
    w[r * 4 + 2] = s[r * 2 + 0] - s[r * 2 + 1];
    w[r * 4 + 3] = T(0.0f) - s[r * 2 + 1];
  }
}

// dg = G^T du G: the 3x3 filter gradient from the gradient of its 16 transformed elements
// (the adjoint of filter_transform).
template <typename T>
HOST_DEVICE_INLINE void filter_gradient_transform(const T* du, T* dg) {
  const T half(0.5f);
  T s[3 * 4];
  for (int c = 0; c < 4; ++c) {  // columns of G^T du
    const T mid = (du[1 * 4 + c] + du[2 * 4 + c]) * half;
    s[0 * 4 + c] = du[0 * 4 + c] + mid;
    s[1 * 4 + c] = (du[1 * 4 + c] - du[2 * 4 + c]) * half;
    s[2 * 4 + c] = mid + du[3 * 4 + c];
  }
  for (int r = 0; r < 3; ++r) {  // rows of (G^T du) G
    const T mid = (s[r * 4 + 1] + s[r * 4 + 2]) * half;
    dg[r * 3 + 0] = s[r * 4 + 0] + mid;
    dg[r * 3 + 1] = (s[r * 4 + 1] - s[r * 4 + 2]) * half;
    dg[r * 3 + 2] = mid + s[r * 4 + 3];
  }
}

// The tiles of an H x W map: ceil(H / 2) x ceil(W / 2). Tile (ty, tx) reads input rows
// 2 ty - 1 ... 2 ty + 2 (columns likewise; outside the map is the zero padding) and writes
// output rows 2 ty, 2 ty + 1 (those inside the map).
HOST_DEVICE_INLINE int64_t tiles_along(int64_t size) {
  return (size + kTileOut - 1) / kTileOut;
}

}  // namespace msrcnn::winograd_conv3x3
