#pragma once

#include "common/macros.h"

namespace msrcnn {

// N values of T left unconstructed until written: for arrays of at::vec::Vectorized, whose
// default constructor zeroes its value. The compiler cannot prove that a 49-81-element tile of a
// Winograd transform is fully written before it is read, so a plain `Vec t[81]` costs a 3-5 KiB
// memset (rep stos) per tile and channel vector: a fifth of F(7x7)'s output transform (perf).
// T must be trivially copyable and destructible (Vectorized, float); assign before reading.
template <typename T, int N>
struct UninitializedArray {
  union {
    T values[N];
  };
  HOST_DEVICE_INLINE UninitializedArray() {}
  HOST_DEVICE_INLINE T& operator[](int i) { return values[i]; }
  HOST_DEVICE_INLINE const T& operator[](int i) const { return values[i]; }
  HOST_DEVICE_INLINE T* data() { return values; }
  HOST_DEVICE_INLINE const T* data() const { return values; }
};

}  // namespace msrcnn
