#pragma once

// Per-element math lives in HOST_DEVICE_INLINE functions so that the CPU kernels (and the
// CPU tests) run the very code the CUDA kernels run.
#if defined(__CUDACC__)
#define HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#else
#define HOST_DEVICE_INLINE inline
#endif

#define MSRCNN_STRINGIFY_(...) #__VA_ARGS__
#define MSRCNN_STRINGIFY(...) MSRCNN_STRINGIFY_(__VA_ARGS__)
