// winograd_conv3x3 CPU kernels over winograd_conv3x3_math.h. Compiled once per CPU capability:
// CPU_CAPABILITY is DEFAULT, AVX2 or AVX512 (see setup.py), and at::vec::Vectorized follows it.
//
// The tiles (2x2 outputs each for F(2x2, 3x3); E = 16 elements) of all images are numbered in
// one sequence and cut into chunks. Per chunk, on one thread:
//   1. input transform: V[xi][t][ci] = (B^T d_t B)[xi], vectorised over channels (NHWC reads;
//      F(7x7)'s V and M are laid out tile by tile instead, see chunk_strides);
//   2. E GEMMs M[xi] = V[xi] U[xi] ([tiles, Cin] x [Cin, Cout]) by a register-blocked
//      micro-kernel (6 tiles x 16 output channels with 8-float vectors, 12 tiles x 32 with
//      AVX-512's 16), over panels of 16 output channels of the pre-packed U (a micro-tile's
//      K block of U, 16 KiB, stays in L1 while the chunk's rows stream from L2);
//   3. output transform A^T m A fused with bias and ReLU, written channels-last.
// The chunk's V and M are scratch buffers that stay in the caches between the three steps.

#include "ops/conv3x3/cpu/winograd_conv3x3_cpu_kernel.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "common/uninitialized_array.h"
#include "ops/conv3x3/winograd_conv3x3_math.h"

namespace msrcnn::winograd_conv3x3::CPU_CAPABILITY {
namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kV = Vec::size();
// Vectors per panel row: 2 of 8 floats (DEFAULT, AVX2), 1 of 16 (AVX512).
constexpr int kPanelVectors = static_cast<int>(kPanel / kV);
static_assert(kPanel % kV == 0 && (kPanelVectors == 1 || kPanelVectors == 2),
              "the micro-kernel holds a panel row in one or two vectors");
static_assert(kRowQuantum % kV == 0, "transform_tiles_kernel stores whole vectors into padded rows");

// A micro-tile is kRows tiles x 2 vectors of output channels: one panel of 16 in the DEFAULT
// and AVX2 builds (8-float vectors), two panels side by side in the AVX512 build (16-float
// vectors). AVX2: 6 rows x 2 vectors = 12 accumulators + 2 panel vectors + 1 broadcast fit its
// 16 registers. AVX512: 12 rows x 2 = 24 accumulators + 2 + 1 of its 32 registers, 14 loads per
// 24 FMAs. (One panel, 12 x 1 accumulators, made 13 loads per 12 FMAs, and the 100 x 256 x
// 14 x 14 F(7x7) conv's GEMMs ran at half the FMA peak of an AVX-512 Xeon: 42 ms, now 33.)
constexpr int kPanelsPerTile = 2 / kPanelVectors;
constexpr int kRows = kPanelVectors == 2 ? 6 : 12;
// The 16 planes of a chunk's V and M are this many floats (a cache line) further apart than
// their size: planes a multiple of 4 KiB apart would map the 16 streams the transforms read
// and write onto the same L1 sets (and 4K-alias), which measured ~15% slower. (Likewise the
// tiles of a chunk laid out tile by tile, the GEMM's rows.)
constexpr int64_t kPlanePad = 16;
// Input channels per K block: a micro-tile's block of U (kKBlock x 16 floats per panel, 16 KiB
// for 256) stays in L1 while the chunk's rows stream from L2.
constexpr int64_t kKBlock = 256 / kPanelsPerTile;

int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

// Sizes and strides of one call.
struct Geometry {
  int64_t in_channels, out_channels, height, width;
  int64_t tiles_h, tiles_w, tiles_per_image;
  int64_t in_ld;   // V row stride: Cin rounded up to whole vectors
  int64_t out_ld;  // M row stride: Cout rounded up to whole panels
  int64_t panels;
  int64_t in_sn, in_sh, in_sw;
  int64_t out_sn, out_sh, out_sw;
};

// 64-byte aligned float scratch.
struct Scratch {
  float* data;
  explicit Scratch(int64_t count)
      : data(static_cast<float*>(std::aligned_alloc(64, round_up(std::max<int64_t>(count, 1) * sizeof(float), 64)))) {
    TORCH_CHECK(data != nullptr, "msrcnn::conv3x3: out of memory for ", count, " floats of scratch");
  }
  ~Scratch() {
    std::free(data);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// c[r][0:V kV] (+)= sum_k a[r * lda + k] * (b[k kPanel][0:kV], b[k kPanel + second][0:kV])
// for r < R: V vectors of output channels (`second` floats from the first in U: the panel's
// other half, or the next panel) for R tiles. Not accumulating: c is overwritten. The
// accumulators are named variables, not an array: GCC keeps an array of Vectorized in memory
// (a store per FMA), named ones in registers. Row r's channels are in r0 (and r1 where V = 2).
template <int R, int V>
inline void micro_kernel(int64_t depth, const float* a, int64_t lda, const float* b, int64_t second, float* c,
                         int64_t ldc, bool accumulate) {
  static_assert(R >= 1 && R <= kRows && kRows <= 12, "rows of a micro-tile");
  static_assert(V == 1 || V == 2, "vectors per row of a micro-tile");
  Vec c00(0.0f), c01(0.0f), c10(0.0f), c11(0.0f), c20(0.0f), c21(0.0f);
  Vec c30(0.0f), c31(0.0f), c40(0.0f), c41(0.0f), c50(0.0f), c51(0.0f);
  Vec c60(0.0f), c61(0.0f), c70(0.0f), c71(0.0f), c80(0.0f), c81(0.0f);
  Vec c90(0.0f), c91(0.0f), ca0(0.0f), ca1(0.0f), cb0(0.0f), cb1(0.0f);
#define MSRCNN_WINOGRAD_ROWS(X)                                                              \
  X(0, c00, c01) X(1, c10, c11) X(2, c20, c21) X(3, c30, c31) X(4, c40, c41) X(5, c50, c51) \
  X(6, c60, c61) X(7, c70, c71) X(8, c80, c81) X(9, c90, c91) X(10, ca0, ca1) X(11, cb0, cb1)
#define MSRCNN_WINOGRAD_LOAD(r, r0, r1)  \
  if constexpr (R > r) {                 \
    r0 = Vec::loadu(c + r * ldc);        \
    if constexpr (V == 2) {              \
      r1 = Vec::loadu(c + r * ldc + kV); \
    }                                    \
  }
#define MSRCNN_WINOGRAD_FMA(r, r0, r1) \
  if constexpr (R > r) {               \
    const Vec ar(a[r * lda + k]);      \
    r0 = at::vec::fmadd(ar, b0, r0);   \
    if constexpr (V == 2) {            \
      r1 = at::vec::fmadd(ar, b1, r1); \
    }                                  \
  }
#define MSRCNN_WINOGRAD_STORE(r, r0, r1) \
  if constexpr (R > r) {                 \
    r0.store(c + r * ldc);               \
    if constexpr (V == 2) {              \
      r1.store(c + r * ldc + kV);        \
    }                                    \
  }
  if (accumulate) {
    MSRCNN_WINOGRAD_ROWS(MSRCNN_WINOGRAD_LOAD)
  }
  for (int64_t k = 0; k < depth; ++k) {
    const Vec b0 = Vec::loadu(b + k * kPanel);
    // b1 is unused (and not loaded) where V = 1.
    const Vec b1 = V == 2 ? Vec::loadu(b + k * kPanel + second) : b0;
    MSRCNN_WINOGRAD_ROWS(MSRCNN_WINOGRAD_FMA)
  }
  MSRCNN_WINOGRAD_ROWS(MSRCNN_WINOGRAD_STORE)
#undef MSRCNN_WINOGRAD_STORE
#undef MSRCNN_WINOGRAD_FMA
#undef MSRCNN_WINOGRAD_LOAD
#undef MSRCNN_WINOGRAD_ROWS
}

// micro_kernel<rows, V> for 1 <= rows <= R (a chunk's last micro-tile may be partial: the host
// rounds chunks to 6 rows, half of AVX512's micro-tile).
template <int V, int R = kRows>
void micro_kernel_rows(int rows, int64_t depth, const float* a, int64_t lda, const float* b, int64_t second,
                       float* c, int64_t ldc, bool accumulate) {
  if constexpr (R > 1) {
    if (rows < R) {
      return micro_kernel_rows<V, R - 1>(rows, depth, a, lda, b, second, c, ldc, accumulate);
    }
  }
  micro_kernel<R, V>(depth, a, lda, b, second, c, ldc, accumulate);
}

// Image, tile row and tile column of tile number `tile` (tiles numbered image by image, row-major).
struct TilePosition {
  int64_t n, ty, tx;
};

inline TilePosition tile_position(const Geometry& g, int64_t tile) {
  return {tile / g.tiles_per_image, (tile % g.tiles_per_image) / g.tiles_w, tile % g.tiles_w};
}

// Floats between consecutive planes of a chunk of `count` tiles with rows of `ld` floats.
int64_t plane_stride(int64_t count, int64_t ld) {
  return count * ld + kPlanePad;
}

// Where element xi of tile t is in a chunk's V or M: plane * xi + row * t floats from its start.
struct Strides {
  int64_t plane, row;
};

// A chunk's layout: plane by plane (each plane the GEMM operand of one element), or tile by
// tile (a tile's elements one after the other) for F(7x7), whose transforms read or write a
// tile's 81 elements: as 81 streams, one per plane, the 100 x 256 x 14 x 14 conv took 28.5 ms,
// tile by tile 24.5 (median of 12 alternating runs; 257 input channels 27.5 -> 23.8; 64
// channels and F(4x4) on large maps within 5 %, F(4x4) the worse for it; AVX-512 Xeon).
template <class W>
Strides chunk_strides(int64_t count, int64_t ld) {
  if constexpr (tiles_are_rows_of_elements(W::kElements)) {
    return {ld, W::kElements * ld + kPlanePad};
  } else {
    return {plane_stride(count, ld), ld};
  }
}

// Floats of a chunk of `count` tiles with rows of `ld` floats.
template <class W>
int64_t chunk_floats(int64_t count, int64_t ld) {
  return W::kElements * count * ld + (W::kElements + count) * kPlanePad;
}

// V[xi][t][:] (at vs.plane * xi + vs.row * t) for the tiles [first, first + count).
template <class W>
void transform_inputs(const Geometry& g, const float* input, const float* zeros, int64_t first, int64_t count,
                      Strides vs, float* v) {
  const int64_t plane = vs.plane;
  const int64_t channels = g.in_channels;
  for (int64_t t = 0; t < count; ++t) {
    const auto [n, ty, tx] = tile_position(g, first + t);
    const float* src[W::kElements];
    for (int i = 0; i < W::kIn; ++i) {
      const int64_t y = ty * W::kOut - 1 + i;
      for (int j = 0; j < W::kIn; ++j) {
        const int64_t x = tx * W::kOut - 1 + j;
        const bool inside = y >= 0 && y < g.height && x >= 0 && x < g.width;
        src[i * W::kIn + j] = inside ? input + n * g.in_sn + y * g.in_sh + x * g.in_sw : zeros;
      }
    }
    float* dst = v + t * vs.row;
    UninitializedArray<Vec, W::kElements> d;
    UninitializedArray<Vec, W::kElements> out;
    for (int64_t c = 0; c < channels; c += kV) {
      const int64_t lanes = std::min<int64_t>(kV, channels - c);
      for (int e = 0; e < W::kElements; ++e) {
        d[e] = Vec::loadu(src[e] + c, lanes);
      }
      W::input(d.data(), out.data());
      // Whole vectors: the row is padded to in_ld, and the GEMM reads only the first Cin.
      for (int e = 0; e < W::kElements; ++e) {
        out[e].store(dst + e * plane + c);
      }
    }
  }
}

// M[xi] = V[xi] U[xi] for one chunk of `count` tiles (V and M laid out by vs and ms), output
// channels of the panels [panel_begin, panel_end) (panel_begin a multiple of kPanelsPerTile).
template <class W>
void multiply(const Geometry& g, const float* v, Strides vs, const float* packed, int64_t count, float* m, Strides ms,
              int64_t panel_begin, int64_t panel_end) {
  const int64_t depth = g.in_channels;
  for (int xi = 0; xi < W::kElements; ++xi) {
    const float* a = v + xi * vs.plane;
    const float* u = packed + xi * g.panels * depth * kPanel;
    float* c = m + xi * ms.plane;
    for (int64_t k0 = 0; k0 < depth; k0 += kKBlock) {
      const int64_t kc = std::min(kKBlock, depth - k0);
      for (int64_t p = panel_begin; p < panel_end; p += kPanelsPerTile) {
        const float* b = u + (p * depth + k0) * kPanel;
        // The micro-tile's second vector: the panel's other half, or the next panel's first
        // (AVX512), where there is one.
        const bool two = kPanelVectors == 2 || p + 1 < g.panels;
        const int64_t second = kPanelVectors == 2 ? kV : depth * kPanel;
        for (int64_t r0 = 0; r0 < count; r0 += kRows) {
          const int rows = static_cast<int>(std::min<int64_t>(kRows, count - r0));
          const float* ar = a + r0 * vs.row + k0;
          float* cr = c + r0 * ms.row + p * kPanel;
          if (two) {
            micro_kernel_rows<2>(rows, kc, ar, vs.row, b, second, cr, ms.row, k0 > 0);
          } else {
            micro_kernel_rows<1>(rows, kc, ar, vs.row, b, second, cr, ms.row, k0 > 0);
          }
        }
      }
    }
  }
}

// output = relu?(A^T m A + bias) for the tiles [first, first + count) (M[xi][t] at ms.plane * xi
// + ms.row * t). Outputs of border tiles that fall outside the map go to `sink`.
template <class W>
void transform_outputs(const Geometry& g, const float* m, Strides ms, const float* bias, bool relu, float* sink,
                       int64_t first, int64_t count, float* output) {
  const int64_t plane = ms.plane;
  const int64_t channels = g.out_channels;
  const Vec zero(0.0f);
  for (int64_t t = 0; t < count; ++t) {
    const auto [n, ty, tx] = tile_position(g, first + t);
    float* dst[W::kOut * W::kOut];
    for (int i = 0; i < W::kOut; ++i) {
      const int64_t y = ty * W::kOut + i;
      for (int j = 0; j < W::kOut; ++j) {
        const int64_t x = tx * W::kOut + j;
        dst[i * W::kOut + j] = (y < g.height && x < g.width) ? output + n * g.out_sn + y * g.out_sh + x * g.out_sw
                                                              : sink;
      }
    }
    const float* src = m + t * ms.row;
    UninitializedArray<Vec, W::kElements> in;
    UninitializedArray<Vec, W::kOut * W::kOut> y;
    for (int64_t c = 0; c < channels; c += kV) {
      const int64_t lanes = std::min<int64_t>(kV, channels - c);
      for (int e = 0; e < W::kElements; ++e) {
        in[e] = Vec::loadu(src + e * plane + c);
      }
      W::output(in.data(), y.data());
      const Vec b = bias != nullptr ? Vec::loadu(bias + c, lanes) : zero;
      for (int q = 0; q < W::kOut * W::kOut; ++q) {
        Vec value = y[q] + b;
        if (relu) {
          value = at::vec::maximum(value, zero);
        }
        value.store(dst[q] + c, lanes);
      }
    }
  }
}

// W[xi][t][:] = (A dy A^T)[xi] (at ws.plane * xi + ws.row * t) for the tiles [first, first +
// count): each tile's block of the output gradient, zero outside the map.
template <class W>
void transform_output_gradients(const Geometry& g, const float* grad, const float* zeros, int64_t first,
                                int64_t count, Strides ws, float* w) {
  const int64_t plane = ws.plane;
  const int64_t channels = g.out_channels;
  for (int64_t t = 0; t < count; ++t) {
    const auto [n, ty, tx] = tile_position(g, first + t);
    const float* src[W::kOut * W::kOut];
    for (int i = 0; i < W::kOut; ++i) {
      const int64_t y = ty * W::kOut + i;
      for (int j = 0; j < W::kOut; ++j) {
        const int64_t x = tx * W::kOut + j;
        src[i * W::kOut + j] =
            (y < g.height && x < g.width) ? grad + n * g.out_sn + y * g.out_sh + x * g.out_sw : zeros;
      }
    }
    float* dst = w + t * ws.row;
    UninitializedArray<Vec, W::kOut * W::kOut> dy;
    UninitializedArray<Vec, W::kElements> out;
    for (int64_t c = 0; c < channels; c += kV) {
      const int64_t lanes = std::min<int64_t>(kV, channels - c);
      for (int q = 0; q < W::kOut * W::kOut; ++q) {
        dy[q] = Vec::loadu(src[q] + c, lanes);
      }
      W::output_gradient(dy.data(), out.data());
      for (int e = 0; e < W::kElements; ++e) {  // whole vectors: rows are padded
        out[e].store(dst + e * plane + c);
      }
    }
  }
}

// The sizes and strides of a stride-1 convolution of `input` with `out_channels` outputs laid
// out with `out` strides (N, C, H, W).
template <class W>
Geometry make_geometry(const at::Tensor& input, int64_t out_channels, at::IntArrayRef out) {
  Geometry g{};
  g.in_channels = input.size(1);
  g.out_channels = out_channels;
  g.height = input.size(2);
  g.width = input.size(3);
  g.tiles_h = tiles_along(g.height, W::kOut);
  g.tiles_w = tiles_along(g.width, W::kOut);
  g.tiles_per_image = g.tiles_h * g.tiles_w;
  g.in_ld = round_up(g.in_channels, kV);
  g.panels = panels_of(g.out_channels);
  g.out_ld = g.panels * kPanel;
  g.in_sn = input.stride(0);
  g.in_sh = input.stride(2);
  g.in_sw = input.stride(3);
  g.out_sn = out[0];
  g.out_sh = out[2];
  g.out_sw = out[3];
  return g;
}

template <class W>
void transform_filter(const at::Tensor& weight, bool flip, at::Tensor& packed) {
  const int64_t out_channels = weight.size(0);
  const int64_t in_channels = weight.size(1);
  const int64_t panels = panels_of(out_channels);
  const int64_t stride_out = weight.stride(0);
  const int64_t stride_in = weight.stride(1);
  // Offsets of the 9 taps, row-major; the k-th tap transformed is tap 8 - k where `flip` (the
  // filter rotated by 180°).
  int64_t tap_offset[9];
  for (int k = 0; k < 9; ++k) {
    tap_offset[k] = (k / 3) * weight.stride(2) + (k % 3) * weight.stride(3);
  }
  auto read = [flip](int k) { return flip ? 8 - k : k; };
  // How a block's taps are read: each 3x3 filter 9 consecutive floats (a contiguous weight, or
  // its transpose) are transposed 8x8 at a time where vectors are 8 floats; output channels 1
  // apart (a transposed channels-last weight) are loaded as vectors; where vectors are 16 floats
  // (AVX512), 16 adjacent filters of 9 (the input gradient's transposed contiguous weight) are
  // transposed 16 x 9, and other strides, contiguous filters too, are read by one vector gather
  // per tap (whole blocks) or element by element (a last partial block). Element by element, the
  // AVX512 build's filter transforms took 5 % of the demo's training time (the 512 x 512 and
  // 256 x 256 convs of a 2-image batch, whose F(2x2) planes are transformed on every call).
  // Gathers are slow on AMD Zen 4: there the 16 x 9 transpose took the input gradient of 2 x 512
  // x 6 x 8 maps from 3.2-4.2 to 2.5-3.0 ms (AVX2's build 3.2-3.8); on the forward's filters,
  // 4608 floats apart at 512 channels, it ran 6 % slower than the gathers and is not taken.
  const bool filters_contiguous = weight.stride(3) == 1 && weight.stride(2) == 3;
  const bool channels_adjacent = stride_out == 1;
  const bool gathers = (kV - 1) * stride_out <= std::numeric_limits<int32_t>::max();  // int32 lane offsets
  const auto lane_offsets = at::vec::Vectorized<int32_t>::arange(0, static_cast<int32_t>(gathers ? stride_out : 0));
  const float* w = weight.const_data_ptr<float>();
  float* u = packed.mutable_data_ptr<float>();
  // Blocks of kV output channels: their filters of one input channel, kV rows of 9 floats,
  // transposed into 9 vectors (one per tap), transformed together. A panel's blocks of one
  // input channel run one after the other, so each 64-byte row of a transformed plane is
  // written whole while in cache: block by block over all input channels, every row was
  // fetched and written back twice (a 256 -> 256-channel conv of one 14 x 14 map with F(7x7)
  // forced, where the filter transform dominates: 4.7 -> 3.4 ms per call).
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float taps[9 * kV];
    UninitializedArray<Vec, 9> g;
    UninitializedArray<Vec, W::kElements> out;
    // The filters of output channels [co, co + kV) and input channel ci into their rows of the
    // packed planes.
    auto transform_block = [&](int64_t co, int64_t ci) {
      const int64_t lanes = std::min<int64_t>(kV, out_channels - co);
      float* dst = u + ((co / kPanel) * in_channels) * kPanel + co % kPanel;
      const float* src = w + co * stride_out + ci * stride_in;
      if (channels_adjacent) {
        for (int k = 0; k < 9; ++k) {
          g[k] = Vec::loadu(src + tap_offset[read(k)], lanes);
        }
      } else {
        bool transposed = false;
        if constexpr (kV == 8) {
          if (filters_contiguous && lanes == kV) {
            at::vec::transpose_mxn<float, 8, 8>(src, stride_out, taps, kV);  // taps 0-7
            for (int64_t l = 0; l < kV; ++l) {
              taps[8 * kV + l] = src[l * stride_out + 8];
            }
            transposed = true;
          }
        } else if constexpr (kV == 16) {
          if (filters_contiguous && stride_out == 9 && lanes == kV) {
            at::vec::transpose_mxn<float, 16, 9>(src, stride_out, taps, kV);  // masked loads of 9
            transposed = true;
          }
        }
        const bool gathered = !transposed && gathers && lanes == kV;  // straight into g
        if (gathered) {
          for (int k = 0; k < 9; ++k) {
            g[k] = at::vec::gather<sizeof(float)>(src + tap_offset[read(k)], lane_offsets);
          }
        } else if (!transposed) {
          std::fill(taps, taps + 9 * kV, 0.0f);
          for (int64_t l = 0; l < lanes; ++l) {
            for (int k = 0; k < 9; ++k) {
              taps[k * kV + l] = src[l * stride_out + tap_offset[k]];
            }
          }
        }
        if (!gathered) {
          for (int k = 0; k < 9; ++k) {
            g[k] = Vec::loadu(taps + read(k) * kV);
          }
        }
      }
      W::filter(g.data(), out.data());
      for (int xi = 0; xi < W::kElements; ++xi) {
        out[xi].store(dst + xi * panels * in_channels * kPanel + ci * kPanel, lanes);
      }
    };
    for (int64_t panel = begin; panel < end; ++panel) {
      const int64_t panel_end = std::min(out_channels, (panel + 1) * kPanel);
      for (int64_t ci = 0; ci < in_channels; ++ci) {
        for (int64_t co = panel * kPanel; co < panel_end; co += kV) {
          transform_block(co, ci);
        }
      }
    }
  });
}

// All the tiles in one chunk, shared by the threads: each transforms a share of the tiles, then
// multiplies all of them with a share of the panels of U, then transforms a share of the tiles'
// outputs. U is read once in all, not once per thread.
template <class W>
void forward_by_panels(const Geometry& g, const float* in, const float* u, const float* b, bool relu, int64_t tiles,
                       float* out) {
  const Strides vs = chunk_strides<W>(tiles, g.in_ld);
  const Strides ms = chunk_strides<W>(tiles, g.out_ld);
  Scratch v(chunk_floats<W>(tiles, g.in_ld));
  Scratch m(chunk_floats<W>(tiles, g.out_ld));
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    Scratch zeros(g.in_ld);
    std::fill(zeros.data, zeros.data + g.in_ld, 0.0f);
    transform_inputs<W>(g, in, zeros.data, begin, end - begin, vs, v.data + begin * vs.row);
  });
  const int64_t groups = (g.panels + kPanelsPerTile - 1) / kPanelsPerTile;
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    multiply<W>(g, v.data, vs, u, tiles, m.data, ms, begin * kPanelsPerTile, std::min(g.panels, end * kPanelsPerTile));
  });
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    Scratch sink(g.out_ld);
    transform_outputs<W>(g, m.data + begin * ms.row, ms, b, relu, sink.data, begin, end - begin, out);
  });
}

template <class W>
void forward(const at::Tensor& input, const at::Tensor& packed, const std::optional<at::Tensor>& bias, bool relu,
             int64_t tiles_per_chunk, at::Tensor& output) {
  const Geometry g = make_geometry<W>(input, output.size(1), output.strides());

  const int64_t tiles = input.size(0) * g.tiles_per_image;
  const float* in = input.const_data_ptr<float>();
  const float* u = packed.const_data_ptr<float>();
  const float* b = bias.has_value() ? bias->const_data_ptr<float>() : nullptr;
  float* out = output.mutable_data_ptr<float>();
  if (tiles_per_chunk == 0) {
    return forward_by_panels<W>(g, in, u, b, relu, tiles, out);
  }

  // Each thread takes an equal share of the tiles, in chunks of at most tiles_per_chunk. (Whole
  // chunks per thread left the threads unequal: 400 tiles in chunks of 54 split 216 / 184.)
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    Scratch v(chunk_floats<W>(tiles_per_chunk, g.in_ld));
    Scratch m(chunk_floats<W>(tiles_per_chunk, g.out_ld));
    Scratch zeros(g.in_ld);
    Scratch sink(g.out_ld);
    std::fill(zeros.data, zeros.data + g.in_ld, 0.0f);
    for (int64_t first = begin; first < end; first += tiles_per_chunk) {
      const int64_t count = std::min(tiles_per_chunk, end - first);
      const Strides vs = chunk_strides<W>(count, g.in_ld);
      const Strides ms = chunk_strides<W>(count, g.out_ld);
      transform_inputs<W>(g, in, zeros.data, first, count, vs, v.data);
      multiply<W>(g, v.data, vs, u, count, m.data, ms, 0, g.panels);
      transform_outputs<W>(g, m.data, ms, b, relu, sink.data, first, count, out);
    }
  });
}

template <class W>
void transform_tiles(const at::Tensor& input, const at::Tensor& grad, int64_t first, int64_t count, at::Tensor& v,
                     at::Tensor& w) {
  const Geometry g = make_geometry<W>(input, grad.size(1), grad.strides());
  TORCH_INTERNAL_ASSERT(v.stride(1) % kV == 0 && w.stride(1) % kV == 0 && v.stride(2) == 1 && w.stride(2) == 1);
  const float* in = input.const_data_ptr<float>();
  const float* dy = grad.const_data_ptr<float>();
  float* v_data = v.mutable_data_ptr<float>();
  float* w_data = w.mutable_data_ptr<float>();
  const int64_t v_plane = v.stride(0), v_ld = v.stride(1);
  const int64_t w_plane = w.stride(0), w_ld = w.stride(1);
  TORCH_INTERNAL_ASSERT(v_ld >= g.in_ld && w_ld >= round_up(g.out_channels, kV));
  const int64_t grain = std::max<int64_t>(1, 4096 / (g.in_ld + w_ld));
  at::parallel_for(0, count, grain, [&](int64_t begin, int64_t end) {
    Scratch zeros(std::max(g.in_ld, w_ld));
    std::fill(zeros.data, zeros.data + std::max(g.in_ld, w_ld), 0.0f);
    transform_inputs<W>(g, in, zeros.data, first + begin, end - begin, Strides{v_plane, v_ld}, v_data + begin * v_ld);
    transform_output_gradients<W>(g, dy, zeros.data, first + begin, end - begin, Strides{w_plane, w_ld},
                                  w_data + begin * w_ld);
  });
}

template <class W>
void filter_gradient(const at::Tensor& grad_u, at::Tensor& grad_weight) {
  const int64_t out_channels = grad_u.size(1);
  const int64_t in_channels = grad_u.size(2);
  const int64_t plane = out_channels * in_channels;
  const float* du = grad_u.const_data_ptr<float>();
  float* dw = grad_weight.mutable_data_ptr<float>();
  at::parallel_for(0, out_channels, 1, [&](int64_t begin, int64_t end) {
    UninitializedArray<Vec, W::kElements> in;
    UninitializedArray<Vec, 9> out;
    alignas(64) float taps[9 * kV];
    for (int64_t co = begin; co < end; ++co) {
      for (int64_t ci = 0; ci < in_channels; ci += kV) {
        const int64_t lanes = std::min<int64_t>(kV, in_channels - ci);
        const float* src = du + co * in_channels + ci;
        for (int e = 0; e < W::kElements; ++e) {
          in[e] = Vec::loadu(src + e * plane, lanes);
        }
        W::filter_gradient(in.data(), out.data());
        for (int k = 0; k < 9; ++k) {
          out[k].store(taps + k * kV);
        }
        float* dst = dw + (co * in_channels + ci) * 9;
        for (int64_t l = 0; l < lanes; ++l) {
          for (int k = 0; k < 9; ++k) {
            dst[l * 9 + k] = taps[k * kV + l];
          }
        }
      }
    }
  });
}

}  // namespace

#define MSRCNN_WINOGRAD_BY_TILE(TILE, CALL)                                             \
  switch (TILE) {                                                                      \
    case 2: return CALL(F2x2);                                                         \
    case 4: return CALL(F4x4);                                                         \
    case 7: return CALL(F7x7);                                                         \
    default: TORCH_CHECK(false, "msrcnn::conv3x3: unknown Winograd tile ", TILE);      \
  }

void transform_filter_kernel(const at::Tensor& weight, bool flip, int64_t tile, at::Tensor& packed) {
#define MSRCNN_CALL(W) transform_filter<W>(weight, flip, packed)
  MSRCNN_WINOGRAD_BY_TILE(tile, MSRCNN_CALL)
#undef MSRCNN_CALL
}

void forward_kernel(const at::Tensor& input, const at::Tensor& packed, const std::optional<at::Tensor>& bias,
                    bool relu, int64_t tile, int64_t tiles_per_chunk, at::Tensor& output) {
#define MSRCNN_CALL(W) forward<W>(input, packed, bias, relu, tiles_per_chunk, output)
  MSRCNN_WINOGRAD_BY_TILE(tile, MSRCNN_CALL)
#undef MSRCNN_CALL
}

void transform_tiles_kernel(const at::Tensor& input, const at::Tensor& grad, int64_t tile, int64_t first,
                            int64_t count, at::Tensor& v, at::Tensor& w) {
#define MSRCNN_CALL(W) transform_tiles<W>(input, grad, first, count, v, w)
  MSRCNN_WINOGRAD_BY_TILE(tile, MSRCNN_CALL)
#undef MSRCNN_CALL
}

void filter_gradient_kernel(const at::Tensor& grad_u, int64_t tile, at::Tensor& grad_weight) {
#define MSRCNN_CALL(W) filter_gradient<W>(grad_u, grad_weight)
  MSRCNN_WINOGRAD_BY_TILE(tile, MSRCNN_CALL)
#undef MSRCNN_CALL
}

#undef MSRCNN_WINOGRAD_BY_TILE

}  // namespace msrcnn::winograd_conv3x3::CPU_CAPABILITY
