#pragma once

// Run-time choice between the per-capability builds of the hot CPU kernels
// (csrc/**/cpu/*_kernel.cpp are compiled into namespaces DEFAULT, AVX2 and AVX512; see setup.py).

#include <string>

namespace msrcnn {

// In increasing order: a CPU that runs one runs those below it.
enum class CpuCapability { DEFAULT = 0, AVX2 = 1, AVX512 = 2 };

// The capability the kernels use now: the best the CPU supports, unless lowered by the
// environment variable MSRCNN_CPU_CAPABILITY=default|avx2|avx512 or set_cpu_capability().
CpuCapability cpu_capability();

// The best capability this CPU supports: AVX512 with AVX-512 F, BW, VL and DQ (and AVX2 and
// FMA), AVX2 with AVX2 and FMA, else DEFAULT.
CpuCapability max_cpu_capability();

// Selects `name` ("default", "avx2" or "avx512", any case); raises if the CPU does not support it.
void set_cpu_capability(const std::string& name);

const char* cpu_capability_name(CpuCapability capability);

// Whether ATen's bfloat16 matrix products are worth taking for float32 ones here: an AMD CPU with
// AVX-512 BF16 (Zen 4 on), with the capability in use AVX512 (MSRCNN_CPU_CAPABILITY=avx2 turns it
// off with the rest). Measured, oneDNN's bf16 GEMM of 1000 x 12544 x 1024: 60 ms against
// float32's 130 on a 2-core Zen 4, but 156 against 83 on a 2-core Intel Xeon with AVX-512 BF16
// and no AMX (README, "AVX-512 against AVX2"); AMX machines are not measured.
bool bf16_dot_in_use();

// Whether an AMD CPU runs the AVX512 builds now (the capability in use AVX512): kernel files whose
// AVX512 build pays on AMD's Zen 4 and costs on Intel's AVX-512 cores take it here only
// (MSRCNN_CPU_DISPATCH_AVX512_ON_AMD). Soft-NMS, measured: 0.77-0.81x its AVX2 build's time on a
// 2-core Zen 4 (2026-11-28), 1.15-1.3x on a 2-core AVX-512 Xeon (2026-11-26).
bool amd_avx512_in_use();

}  // namespace msrcnn

// Calls NAMESPACE::AVX512::FN(...), NAMESPACE::AVX2::FN(...) or NAMESPACE::DEFAULT::FN(...) by
// the current capability.
#define MSRCNN_CPU_DISPATCH(NAMESPACE, FN, ...)                                  \
  ((::msrcnn::cpu_capability() == ::msrcnn::CpuCapability::AVX512)               \
       ? NAMESPACE::AVX512::FN(__VA_ARGS__)                                      \
       : (::msrcnn::cpu_capability() == ::msrcnn::CpuCapability::AVX2)           \
             ? NAMESPACE::AVX2::FN(__VA_ARGS__)                                  \
             : NAMESPACE::DEFAULT::FN(__VA_ARGS__))

// As MSRCNN_CPU_DISPATCH_UP_TO_AVX2, but NAMESPACE::AVX512::FN(...) where amd_avx512_in_use().
#define MSRCNN_CPU_DISPATCH_AVX512_ON_AMD(NAMESPACE, FN, ...)                  \
  (::msrcnn::amd_avx512_in_use()                                               \
       ? NAMESPACE::AVX512::FN(__VA_ARGS__)                                    \
       : MSRCNN_CPU_DISPATCH_UP_TO_AVX2(NAMESPACE, FN, __VA_ARGS__))

// As MSRCNN_CPU_DISPATCH, for kernels whose AVX512 build measured slower (files built up to AVX2
// only, setup.py's WIDEST_CAPABILITY, and hard NMS): an AVX-512 CPU runs their AVX2 build.
#define MSRCNN_CPU_DISPATCH_UP_TO_AVX2(NAMESPACE, FN, ...)                     \
  ((::msrcnn::cpu_capability() != ::msrcnn::CpuCapability::DEFAULT)            \
       ? NAMESPACE::AVX2::FN(__VA_ARGS__)                                      \
       : NAMESPACE::DEFAULT::FN(__VA_ARGS__))
