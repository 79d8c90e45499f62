#pragma once

// Launch helpers for one-thread-per-element kernels with a grid-stride loop.

#include <cuda_runtime.h>
#include <stdint.h>

#include <algorithm>

namespace msrcnn {

constexpr int kThreadsPerBlock = 256;
// Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = 65535;

inline dim3 grid_size(int64_t n) {
  return dim3(static_cast<unsigned>(std::min<int64_t>((n + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks)));
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t index_stride() {
  return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

}  // namespace msrcnn
