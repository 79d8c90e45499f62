#pragma once

// Floating-point +, -, * rounded one operation at a time, never fused into an FMA. nvcc fuses
// a * b + c by default, and GCC does where FMA instructions are enabled (the AVX2 builds of
// *_kernel.cpp): use these where a result must match a reference that rounds each operation
// (a chain of PyTorch tensor ops), e.g. before truncating to an integer. Host code calling
// them must be built without FMA (any file but *_kernel.cpp).

#include "common/macros.h"

namespace msrcnn {

HOST_DEVICE_INLINE float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

HOST_DEVICE_INLINE double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

HOST_DEVICE_INLINE float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

HOST_DEVICE_INLINE double sub_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

HOST_DEVICE_INLINE float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

HOST_DEVICE_INLINE double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

}  // namespace msrcnn
