#pragma once

// Large CPU outputs and buffers in 2 MiB-aligned blocks that are advised as transparent huge
// pages and kept for reuse once freed.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace msrcnn {

// at::empty(sizes, options, memory_format); a CPU tensor of at least 4 MiB takes its memory
// from a cache of blocks this process freed before (a block at most 1.5x the size asked for),
// or else from a fresh 2 MiB-aligned mapping advised to the kernel as huge pages (madvise
// MADV_HUGEPAGE; Linux with transparent huge pages in "madvise" or "always" mode; elsewhere, or
// where the advice is refused, 4 KiB pages).
//
// Why: a fresh multi-megabyte buffer is faulted in page by page and zeroed by the kernel as a
// kernel first writes it, and in a virtual machine the hypervisor may back each page afresh
// too: 50 MB of RoIAlign output took ~12 ms in 4 KiB faults and zeroing, ~4 ms in huge pages,
// and 60-80 ms more in the phases where this VM's host backed the pages again (AVX-512 Xeon
// guest, 2026-11-27; glibc's malloc maps blocks above 32 MiB afresh on every allocation). A
// reused block costs none of that. Freed blocks stay cached up to kMaxCachedBytes in all (the
// least recently freed go first); empty_cache() gives them all back.
at::Tensor empty_large(at::IntArrayRef sizes, const at::TensorOptions& options,
                       std::optional<at::MemoryFormat> memory_format = std::nullopt);

// Bytes of freed blocks kept for reuse, at most.
constexpr int64_t kMaxCachedBytes = int64_t{512} << 20;

struct LargeBlockCacheStats {
  int64_t cached_bytes;  // freed blocks kept for reuse
  int64_t cached_blocks;
  int64_t in_use_bytes;  // blocks held by live tensors
  int64_t reused;        // allocations served from the cache (since the process started)
  int64_t mapped;        // allocations that mapped a fresh block
};

LargeBlockCacheStats large_block_cache_stats();

// Unmaps every cached block (blocks held by live tensors are unmapped when those are freed).
void empty_cache();

// Holds the cache's lock for `seconds` (tests: a fork() meanwhile must not copy it held; the
// cache's lock is taken before fork() and released after, csrc/common/fork_safe.h).
void hold_large_block_cache_for_testing(double seconds);

}  // namespace msrcnn
