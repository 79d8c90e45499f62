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
#include "common/uninitialized_array.h"

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

// out (Out x Out) = M in M^T for in (In x In), M given by its 1-D transform.
template <int In, int Out, typename T, typename F>
HOST_DEVICE_INLINE void apply_2d(const T* in, T* out, F transform_1d) {
  UninitializedArray<T, Out * In> t;
  for (int c = 0; c < In; ++c) {  // columns: t = M in
    transform_1d(in + c, In, t.data() + c, In);
  }
  for (int r = 0; r < Out; ++r) {  // rows: out = t M^T
    transform_1d(t.data() + r * In, 1, out + r * Out, 1);
  }
}

// --- F(4x4, 3x3) ------------------------------------------------------------------------------
// A 4x4 block from a 6x6 patch: 36 products for 144 (2.25 per output against F(2x2, 3x3)'s 4),
// and 2.25 transformed elements per output against 4: both the GEMMs and the transforms' memory
// traffic shrink by 1.78x. The price is precision: the points 0, +-1, +-2 (1/4, 1/6, 1/12, 1/24
// in G; up to 8 in A^T) make the transformed terms larger, so the float32 error is ~10x
// F(2x2, 3x3)'s (tests/ops/test_conv3x3.py measures it).
//
//   B^T = | 4  0 -5  0  1  0 |   G = |  1/4     0     0  |   A^T = | 1  1  1  1  1  0 |
//         | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6 |         | 0  1 -1  2 -2  0 |
//         | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6 |         | 0  1  1  4  4  0 |
//         | 0 -2 -1  2  1  0 |       | 1/24  1/12   1/6 |         | 0  1 -1  8 -8  1 |
//         | 0  2 -1 -2  1  0 |       | 1/24 -1/12   1/6 |
//         | 0  4  0 -5  0  1 |       |   0     0     1  |
//
// Each 2-D transform is its 1-D transform applied to the columns, then to the rows.

namespace f4 {

constexpr int kTileOut = 4;
constexpr int kTileIn = 6;
constexpr int kTileElements = kTileIn * kTileIn;

// out = M in for a 1-D transform M (Out x In) of In values `stride` apart.
// B^T x (6 -> 6).
template <typename T>
HOST_DEVICE_INLINE void input_1d(const T* x, int sx, T* y, int sy) {
  const T x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx], x4 = x[4 * sx], x5 = x[5 * sx];
  const T four(4.0f), five(5.0f), two(2.0f);
  y[0] = four * x0 - five * x2 + x4;
  y[sy] = x3 + x4 - four * (x1 + x2);
  y[2 * sy] = four * (x1 - x2) + x4 - x3;
  y[3 * sy] = two * (x3 - x1) + x4 - x2;
  y[4 * sy] = two * (x1 - x3) + x4 - x2;
  y[5 * sy] = four * x1 - five * x3 + x5;
}

// G g (3 -> 6).
template <typename T>
HOST_DEVICE_INLINE void filter_1d(const T* x, int sx, T* y, int sy) {
  const T x0 = x[0], x1 = x[sx], x2 = x[2 * sx];
  const T sixth(1.0f / 6.0f), quarter(0.25f), twelfth(1.0f / 12.0f), twenty_fourth(1.0f / 24.0f);
  const T even = x0 + x2;
  y[0] = quarter * x0;
  y[sy] = T(0.0f) - sixth * (even + x1);
  y[2 * sy] = sixth * (x1 - even);
  const T a = twenty_fourth * x0 + sixth * x2;
  y[3 * sy] = a + twelfth * x1;
  y[4 * sy] = a - twelfth * x1;
  y[5 * sy] = x2;
}

// A^T m (6 -> 4).
template <typename T>
HOST_DEVICE_INLINE void output_1d(const T* x, int sx, T* y, int sy) {
  const T x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx], x4 = x[4 * sx], x5 = x[5 * sx];
  const T two(2.0f), four(4.0f), eight(8.0f);
  const T s12 = x1 + x2, d12 = x1 - x2, s34 = x3 + x4, d34 = x3 - x4;
  y[0] = x0 + s12 + s34;
  y[sy] = d12 + two * d34;
  y[2 * sy] = s12 + four * s34;
  y[3 * sy] = d12 + eight * d34 + x5;
}

// A dy (4 -> 6): the adjoint of output_1d.
template <typename T>
HOST_DEVICE_INLINE void output_gradient_1d(const T* x, int sx, T* y, int sy) {
  const T x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx];
  const T two(2.0f), four(4.0f), eight(8.0f);
  const T even = x0 + x2, odd = x1 + x3;
  const T even_w = x0 + four * x2, odd_w = two * x1 + eight * x3;
  y[0] = x0;
  y[sy] = even + odd;
  y[2 * sy] = even - odd;
  y[3 * sy] = even_w + odd_w;
  y[4 * sy] = even_w - odd_w;
  y[5 * sy] = x3;
}

// G^T du (6 -> 3): the adjoint of filter_1d.
template <typename T>
HOST_DEVICE_INLINE void filter_gradient_1d(const T* x, int sx, T* y, int sy) {
  const T x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx], x4 = x[4 * sx], x5 = x[5 * sx];
  const T sixth(1.0f / 6.0f), quarter(0.25f), twelfth(1.0f / 12.0f), twenty_fourth(1.0f / 24.0f);
  const T s12 = x1 + x2, s34 = x3 + x4;
  y[0] = quarter * x0 - sixth * s12 + twenty_fourth * s34;
  y[sy] = sixth * (x2 - x1) + twelfth * (x3 - x4);
  y[2 * sy] = sixth * (s34 - s12) + x5;
}

template <typename T>
HOST_DEVICE_INLINE void input_transform(const T* d, T* v) {
  apply_2d<6, 6>(d, v, [](const T* x, int sx, T* y, int sy) { input_1d(x, sx, y, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void filter_transform(const T* g, T* u) {
  apply_2d<3, 6>(g, u, [](const T* x, int sx, T* y, int sy) { filter_1d(x, sx, y, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void output_transform(const T* m, T* y) {
  apply_2d<6, 4>(m, y, [](const T* x, int sx, T* out, int sy) { output_1d(x, sx, out, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void output_gradient_transform(const T* dy, T* w) {
  apply_2d<4, 6>(dy, w, [](const T* x, int sx, T* y, int sy) { output_gradient_1d(x, sx, y, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void filter_gradient_transform(const T* du, T* dg) {
  apply_2d<6, 3>(du, dg, [](const T* x, int sx, T* y, int sy) { filter_gradient_1d(x, sx, y, sy); });
}

}  // namespace f4

// --- F(7x7, 3x3) ------------------------------------------------------------------------------
// A 7x7 block from a 9x9 patch: 81 products for 441 (1.65 per output against F(4x4, 3x3)'s
// 2.25). It is for 14 x 14 and 7 x 7 maps (the mask and MaskIoU heads' RoIs, a box head's),
// which F(7x7) covers with whole tiles where F(4x4) computes a 16 x 16 or 8 x 8 block:
// 4 x 81 = 324 products per 14 x 14 map and channel pair against F(4x4)'s 16 x 36 = 576.
//
// Toom-Cook on the finite points 0, +-1/2, +-3/2, +-3/4, -4 and infinity: of the 2,640 sets of
// 8 points from 0 and 22 small fractions (at least three +- pairs) this one gave the smallest
// float32 error in a simulation (RMS 1.8e-5 of the outputs' RMS at 256 input channels, against
// 2.3e-6 for F(4x4)'s 0, +-1, +-2 and 4.5e-6 for F(6x6)'s usual points). The matrices, exact
// fractions (rows of M(x) / (x - p_j) for B^T, with M(x) the product of (x - p_l); G's rows
// scaled by 1 / prod_{l != j} (p_j - p_l); A^T's columns the powers of the points):
//   B^T[j][k] = coefficient of x^k, G[j][k] = f_j p_j^k, A^T[i][j] = p_j^i (last: infinity).
// Entries that are 0 are skipped at compile time (the loops are unrolled over constants).

namespace f7 {

constexpr int kTileOut = 7;
constexpr int kTileIn = 9;
constexpr int kTileElements = kTileIn * kTileIn;

// acc + c x for a constant c (once inlined): no multiply for c = +-1, nothing for c = 0.
template <typename T>
HOST_DEVICE_INLINE T add_scaled(T acc, float c, T x) {
  if (c == 1.0f) {
    return acc + x;
  }
  if (c == -1.0f) {
    return acc - x;
  }
  return c == 0.0f ? acc : acc + T(c) * x;
}

// y[i sy] = sum_j m[i][j] x[j sx] for a constant matrix m (Out x In), zero entries skipped.
template <int Out, int In, typename T>
HOST_DEVICE_INLINE void matrix_1d(const float (&m)[Out][In], const T* x, int sx, T* y, int sy) {
  T in[In];
#pragma GCC unroll 16
  for (int j = 0; j < In; ++j) {
    in[j] = x[j * sx];
  }
#pragma GCC unroll 16
  for (int i = 0; i < Out; ++i) {
    T acc(0.0f);
#pragma GCC unroll 16
    for (int j = 0; j < In; ++j) {
      acc = add_scaled(acc, m[i][j], in[j]);
    }
    y[i * sy] = acc;
  }
}

// B^T (9 x 9).
constexpr float kInput[9][9] = {
    {-81.0 / 64, -81.0 / 256, 63.0 / 8, 63.0 / 32, -49.0 / 4, -49.0 / 16, 4, 1, 0},
    {0, 81.0 / 32, 729.0 / 128, -279.0 / 64, -405.0 / 32, -13.0 / 16, 9.0 / 2, 1, 0},
    {0, -81.0 / 32, 567.0 / 128, 441.0 / 64, -315.0 / 32, -77.0 / 16, 7.0 / 2, 1, 0},
    {0, 27.0 / 32, 99.0 / 128, -303.0 / 64, -143.0 / 32, 83.0 / 16, 11.0 / 2, 1, 0},
    {0, -27.0 / 32, 45.0 / 128, 321.0 / 64, -65.0 / 32, -109.0 / 16, 5.0 / 2, 1, 0},
    {0, -81.0 / 256, 0, 63.0 / 32, 0, -49.0 / 16, 0, 1, 0},
    {0, 27.0 / 16, 171.0 / 64, -111.0 / 16, -95.0 / 8, 1.0 / 2, 19.0 / 4, 1, 0},
    {0, -27.0 / 16, 117.0 / 64, 129.0 / 16, -65.0 / 8, -11.0 / 2, 13.0 / 4, 1, 0},
    {0, -81.0 / 64, -81.0 / 256, 63.0 / 8, 63.0 / 32, -49.0 / 4, -49.0 / 16, 4, 1},
};

// G (9 x 3).
constexpr float kFilter[9][3] = {
    {-64.0 / 81, 0, 0},
    {32.0 / 45, 16.0 / 45, 8.0 / 45},
    {32.0 / 35, -16.0 / 35, 8.0 / 35},
    {32.0 / 2673, 16.0 / 891, 8.0 / 297},
    {32.0 / 1215, -16.0 / 405, 8.0 / 135},
    {-64.0 / 855855, 256.0 / 855855, -1024.0 / 855855},
    {-8192.0 / 23085, -2048.0 / 7695, -512.0 / 2565},
    {-8192.0 / 15795, 2048.0 / 5265, -512.0 / 1755},
    {0, 0, 1},
};

// A^T (7 x 9).
constexpr float kOutput[7][9] = {
    {1, 1, 1, 1, 1, 1, 1, 1, 0},
    {0, 1.0 / 2, -1.0 / 2, 3.0 / 2, -3.0 / 2, -4, 3.0 / 4, -3.0 / 4, 0},
    {0, 1.0 / 4, 1.0 / 4, 9.0 / 4, 9.0 / 4, 16, 9.0 / 16, 9.0 / 16, 0},
    {0, 1.0 / 8, -1.0 / 8, 27.0 / 8, -27.0 / 8, -64, 27.0 / 64, -27.0 / 64, 0},
    {0, 1.0 / 16, 1.0 / 16, 81.0 / 16, 81.0 / 16, 256, 81.0 / 256, 81.0 / 256, 0},
    {0, 1.0 / 32, -1.0 / 32, 243.0 / 32, -243.0 / 32, -1024, 243.0 / 1024, -243.0 / 1024, 0},
    {0, 1.0 / 64, 1.0 / 64, 729.0 / 64, 729.0 / 64, 4096, 729.0 / 4096, 729.0 / 4096, 1},
};

// A^T's columns of the points +p and -p (1/2, 3/2, 3/4), whose entries in row i differ by
// (-1)^i, and its other columns (the points 0, -4 and infinity).
constexpr int kPairs[3][2] = {{1, 2}, {3, 4}, {6, 7}};
constexpr int kSingles[3] = {0, 5, 8};

constexpr bool output_pairs_are_symmetric() {
  for (int i = 0; i < 7; ++i) {
    for (const auto& pair : kPairs) {
      if (kOutput[i][pair[1]] != (i % 2 == 0 ? 1 : -1) * kOutput[i][pair[0]]) {
        return false;
      }
    }
  }
  return true;
}
static_assert(output_pairs_are_symmetric(), "A^T's +-p columns differ by (-1)^row");

// y = A^T x along one axis, each +-p pair of x summed (even rows) and differenced (odd rows)
// once: 36 additions and multiplies against matrix_1d's 50 (F(7x7)'s output transform).
template <typename T>
HOST_DEVICE_INLINE void output_1d(const T* x, int sx, T* y, int sy) {
  T sum[3], difference[3], single[3];
#pragma GCC unroll 4
  for (int p = 0; p < 3; ++p) {
    const T plus = x[kPairs[p][0] * sx];
    const T minus = x[kPairs[p][1] * sx];
    sum[p] = plus + minus;
    difference[p] = plus - minus;
    single[p] = x[kSingles[p] * sx];
  }
#pragma GCC unroll 8
  for (int i = 0; i < 7; ++i) {
    T acc(0.0f);
#pragma GCC unroll 4
    for (int p = 0; p < 3; ++p) {
      acc = add_scaled(acc, kOutput[i][kPairs[p][0]], i % 2 == 0 ? sum[p] : difference[p]);
    }
#pragma GCC unroll 4
    for (int p = 0; p < 3; ++p) {
      acc = add_scaled(acc, kOutput[i][kSingles[p]], single[p]);
    }
    y[i * sy] = acc;
  }
}

// A constant matrix's transpose, for the adjoint transforms.
template <int Rows, int Cols>
struct Transposed {
  float m[Cols][Rows];
};

template <int Rows, int Cols>
constexpr Transposed<Rows, Cols> transpose(const float (&m)[Rows][Cols]) {
  Transposed<Rows, Cols> t{};
  for (int i = 0; i < Rows; ++i) {
    for (int j = 0; j < Cols; ++j) {
      t.m[j][i] = m[i][j];
    }
  }
  return t;
}

// G^T (3 x 9) and A (9 x 7): the weight gradient's transforms.
constexpr auto kFilterGradient = transpose(kFilter);
constexpr auto kOutputGradient = transpose(kOutput);

template <typename T>
HOST_DEVICE_INLINE void input_transform(const T* d, T* v) {
  apply_2d<9, 9>(d, v, [](const T* x, int sx, T* y, int sy) { matrix_1d(kInput, x, sx, y, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void filter_transform(const T* g, T* u) {
  apply_2d<3, 9>(g, u, [](const T* x, int sx, T* y, int sy) { matrix_1d(kFilter, x, sx, y, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void output_transform(const T* m, T* y) {
  apply_2d<9, 7>(m, y, [](const T* x, int sx, T* out, int sy) { output_1d(x, sx, out, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void output_gradient_transform(const T* dy, T* w) {
  apply_2d<7, 9>(dy, w, [](const T* x, int sx, T* y, int sy) { matrix_1d(kOutputGradient.m, x, sx, y, sy); });
}

template <typename T>
HOST_DEVICE_INLINE void filter_gradient_transform(const T* du, T* dg) {
  apply_2d<9, 3>(du, dg, [](const T* x, int sx, T* y, int sy) { matrix_1d(kFilterGradient.m, x, sx, y, sy); });
}

}  // namespace f7

// The three algorithms as types, for kernels written once for all: W::kOut outputs per tile
// side from W::kIn inputs per side, W::kElements products per tile, and the five transforms.
struct F2x2 {
  static constexpr int kOut = kTileOut, kIn = kTileIn, kElements = kTileElements;
  template <typename T>
  static HOST_DEVICE_INLINE void input(const T* d, T* v) { input_transform(d, v); }
  template <typename T>
  static HOST_DEVICE_INLINE void filter(const T* g, T* u) { filter_transform(g, u); }
  template <typename T>
  static HOST_DEVICE_INLINE void output(const T* m, T* y) { output_transform(m, y); }
  template <typename T>
  static HOST_DEVICE_INLINE void output_gradient(const T* dy, T* w) { output_gradient_transform(dy, w); }
  template <typename T>
  static HOST_DEVICE_INLINE void filter_gradient(const T* du, T* dg) { filter_gradient_transform(du, dg); }
};

struct F4x4 {
  static constexpr int kOut = f4::kTileOut, kIn = f4::kTileIn, kElements = f4::kTileElements;
  template <typename T>
  static HOST_DEVICE_INLINE void input(const T* d, T* v) { f4::input_transform(d, v); }
  template <typename T>
  static HOST_DEVICE_INLINE void filter(const T* g, T* u) { f4::filter_transform(g, u); }
  template <typename T>
  static HOST_DEVICE_INLINE void output(const T* m, T* y) { f4::output_transform(m, y); }
  template <typename T>
  static HOST_DEVICE_INLINE void output_gradient(const T* dy, T* w) { f4::output_gradient_transform(dy, w); }
  template <typename T>
  static HOST_DEVICE_INLINE void filter_gradient(const T* du, T* dg) { f4::filter_gradient_transform(du, dg); }
};

struct F7x7 {
  static constexpr int kOut = f7::kTileOut, kIn = f7::kTileIn, kElements = f7::kTileElements;
  template <typename T>
  static HOST_DEVICE_INLINE void input(const T* d, T* v) { f7::input_transform(d, v); }
  template <typename T>
  static HOST_DEVICE_INLINE void filter(const T* g, T* u) { f7::filter_transform(g, u); }
  template <typename T>
  static HOST_DEVICE_INLINE void output(const T* m, T* y) { f7::output_transform(m, y); }
  template <typename T>
  static HOST_DEVICE_INLINE void output_gradient(const T* dy, T* w) { f7::output_gradient_transform(dy, w); }
  template <typename T>
  static HOST_DEVICE_INLINE void filter_gradient(const T* du, T* dg) { f7::filter_gradient_transform(du, dg); }
};

// Tiles of `tile_out` (m) outputs per side along a map side of `size`: ceil(size / m). Tile
// (ty, tx) reads input rows m ty - 1 ... m ty + m (m + 2 rows; columns likewise; outside the map
// is the zero padding) and writes output rows m ty ... m ty + m - 1 (those inside the map).
HOST_DEVICE_INLINE int64_t tiles_along(int64_t size, int64_t tile_out) {
  return (size + tile_out - 1) / tile_out;
}

}  // namespace msrcnn::winograd_conv3x3
