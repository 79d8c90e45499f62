#include "common/large_tensors.h"

#include <ATen/ops/empty.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace msrcnn {

at::Tensor empty_huge_pages(at::IntArrayRef sizes, const at::TensorOptions& options,
                            std::optional<at::MemoryFormat> memory_format) {
  at::Tensor t = at::empty(sizes, options, memory_format);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  constexpr size_t kMinBytes = size_t{4} << 20;
  if (t.is_cpu() && t.nbytes() >= kMinBytes) {
    const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + t.nbytes()) & ~(kHugePage - 1);
    if (last > first) {
      madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // advice: a refusal changes nothing
    }
  }
#endif
  return t;
}

}  // namespace msrcnn
