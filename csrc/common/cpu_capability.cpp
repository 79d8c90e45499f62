#include "common/cpu_capability.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace msrcnn {
namespace {

CpuCapability detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return CpuCapability::AVX2;
  }
#endif
  return CpuCapability::DEFAULT;
}

CpuCapability parse(const std::string& name) {
  if (name == "default" || name == "DEFAULT") {
    return CpuCapability::DEFAULT;
  }
  if (name == "avx2" || name == "AVX2") {
    return CpuCapability::AVX2;
  }
  TORCH_CHECK_VALUE(false, "msrcnn: unknown CPU capability '", name, "'; expected 'default' or 'avx2'");
  return CpuCapability::DEFAULT;
}

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

const char* cpu_capability_name(CpuCapability capability) {
  return capability == CpuCapability::AVX2 ? "avx2" : "default";
}

}  // namespace msrcnn
