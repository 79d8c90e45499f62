#include "common/cpu_capability.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

namespace msrcnn {
namespace {

CpuCapability detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    // ATen's AVX512 build wants the same four extensions (Skylake-SP and later, AMD Zen 4).
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
      return CpuCapability::AVX512;
    }
    return CpuCapability::AVX2;
  }
#endif
  return CpuCapability::DEFAULT;
}

CpuCapability parse(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "default") {
    return CpuCapability::DEFAULT;
  }
  if (lower == "avx2") {
    return CpuCapability::AVX2;
  }
  if (lower == "avx512") {
    return CpuCapability::AVX512;
  }
  TORCH_CHECK_VALUE(false, "msrcnn: unknown CPU capability '", name,
                    "'; expected 'default', 'avx2' or 'avx512'");
  return CpuCapability::DEFAULT;
}

// The best supported capability, lowered to MSRCNN_CPU_CAPABILITY where that names a lower
// one (a higher one than the CPU has gives the best it has).
CpuCapability initial() {
  CpuCapability best = detect();
  const char* env = std::getenv("MSRCNN_CPU_CAPABILITY");
  if (env == nullptr || *env == '\0') {
    return best;
  }
  CpuCapability wanted = parse(env);
  return static_cast<int>(wanted) <= static_cast<int>(best) ? wanted : best;
}

std::atomic<int>& current() {
  static std::atomic<int> value{static_cast<int>(initial())};
  return value;
}

}  // namespace

CpuCapability cpu_capability() {
  return static_cast<CpuCapability>(current().load(std::memory_order_relaxed));
}

CpuCapability max_cpu_capability() {
  static const CpuCapability best = detect();
  return best;
}

void set_cpu_capability(const std::string& name) {
  CpuCapability wanted = parse(name);
  TORCH_CHECK_VALUE(
      static_cast<int>(wanted) <= static_cast<int>(max_cpu_capability()), "msrcnn: this CPU does not support ",
      cpu_capability_name(wanted), " (best: ", cpu_capability_name(max_cpu_capability()), ")");
  current().store(static_cast<int>(wanted), std::memory_order_relaxed);
}

namespace {

bool is_amd() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool amd = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("amd") != 0;
  }();
  return amd;
#else
  return false;
#endif
}

}  // namespace

bool bf16_dot_in_use() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool bf16 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return bf16 && amd_avx512_in_use();
#else
  return false;
#endif
}

bool amd_avx512_in_use() {
  return is_amd() && cpu_capability() == CpuCapability::AVX512;
}

const char* cpu_capability_name(CpuCapability capability) {
  switch (capability) {
    case CpuCapability::AVX512:
      return "avx512";
    case CpuCapability::AVX2:
      return "avx2";
    default:
      return "default";
  }
}

}  // namespace msrcnn
