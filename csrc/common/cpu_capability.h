#pragma once

// Run-time choice between the per-capability builds of the hot CPU kernels
// (csrc/**/cpu/*_kernel.cpp are compiled into namespaces DEFAULT and AVX2; see setup.py).

#include <string>

namespace msrcnn {

enum class CpuCapability { DEFAULT = 0, AVX2 = 1 };

// The capability the kernels use now: the best the CPU supports, unless lowered by the
// environment variable MSRCNN_CPU_CAPABILITY=default|avx2 or set_cpu_capability().
CpuCapability cpu_capability();

// The best capability this CPU supports.
CpuCapability max_cpu_capability();

// Selects `name` ("default" or "avx2"); raises if the CPU does not support it.
void set_cpu_capability(const std::string& name);

const char* cpu_capability_name(CpuCapability capability);

}  // namespace msrcnn

// Calls NAMESPACE::AVX2::FN(...) or NAMESPACE::DEFAULT::FN(...) by the current capability.
#define MSRCNN_CPU_DISPATCH(NAMESPACE, FN, ...)                       \
  ((::msrcnn::cpu_capability() == ::msrcnn::CpuCapability::AVX2)      \
       ? NAMESPACE::AVX2::FN(__VA_ARGS__)                             \
       : NAMESPACE::DEFAULT::FN(__VA_ARGS__))
