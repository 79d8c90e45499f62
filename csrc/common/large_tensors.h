#pragma once

// Large CPU outputs backed by transparent huge pages.

#include <ATen/core/Tensor.h>

#include <optional>

namespace msrcnn {

// at::empty(sizes, options, memory_format), and where it is a CPU tensor of at least 4 MiB, its
// whole 2 MiB pages are advised to the kernel as huge pages (madvise MADV_HUGEPAGE; Linux with
// transparent huge pages in "madvise" or "always" mode; elsewhere, or where the advice is
// refused, nothing changes). A fresh multi-megabyte buffer is otherwise faulted in 4 KiB page by
// page as a kernel first writes it: 50 MB of RoIAlign output took ~25 ms of page faults against
// ~1 ms of faults in huge pages (2-core AMD EPYC; PyTorch's THP_MEM_ALLOC_ENABLE=1 does the same
// for every allocation, process-wide).
at::Tensor empty_huge_pages(at::IntArrayRef sizes, const at::TensorOptions& options,
                            std::optional<at::MemoryFormat> memory_format = std::nullopt);

}  // namespace msrcnn
