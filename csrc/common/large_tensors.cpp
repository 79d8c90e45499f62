#include "common/large_tensors.h"

#include "common/fork_safe.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <list>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace msrcnn {
namespace {

constexpr size_t kMinBytes = size_t{4} << 20;
constexpr size_t kBlockAlign = size_t{2} << 20;  // a huge page

size_t round_up(size_t n, size_t m) {
  return (n + m - 1) / m * m;
}

struct Block {
  void* data;
  size_t bytes;
};

// Freed blocks, least recently freed first; counters for large_block_cache_stats().
class BlockCache {
 public:
  static BlockCache& get() {
    // Never destroyed: tensors freed while the process exits still return their blocks.
    static BlockCache* cache = [] {
      auto* created = new BlockCache();
      hold_across_fork<&BlockCache::mutex>();
      return created;
    }();
    return *cache;
  }

  static std::mutex& mutex() {
    return get().mutex_;
  }

  // A block of at least `bytes` (a multiple of kBlockAlign): a cached one of at most 1.5x
  // that, the smallest such (of those, the most recently freed: the likeliest to be in the
  // caches still), or a fresh mapping; nullptr where none can be mapped.
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto best = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->bytes >= bytes && it->bytes <= bytes + bytes / 2 && (best == free_.end() || it->bytes <= best->bytes)) {
          best = it;
        }
      }
      if (best != free_.end()) {
        void* data = best->data;
        cached_bytes_ -= best->bytes;
        in_use_bytes_ += best->bytes;
        sizes_.push_back(*best);
        free_.erase(best);
        ++reused_;
        return data;
      }
    }
    void* data = map(bytes);
    if (data == nullptr) {
      empty();  // cached blocks of other sizes may be what keeps this one from fitting
      data = map(bytes);
    }
    if (data != nullptr) {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_bytes_ += bytes;
      sizes_.push_back({data, bytes});
      ++mapped_;
    }
    return data;
  }

  // Takes back a block from take(); keeps it, then unmaps the least recently freed blocks
  // beyond kMaxCachedBytes.
  void give(void* data) {
    std::list<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = sizes_.begin();
      while (it != sizes_.end() && it->data != data) {
        ++it;
      }
      TORCH_INTERNAL_ASSERT(it != sizes_.end(), "msrcnn: a large block freed that was not taken");
      in_use_bytes_ -= it->bytes;
      cached_bytes_ += it->bytes;
      free_.splice(free_.end(), sizes_, it);
      while (cached_bytes_ > static_cast<size_t>(kMaxCachedBytes)) {
        cached_bytes_ -= free_.front().bytes;
        evicted.splice(evicted.end(), free_, free_.begin());
      }
    }
    for (const Block& b : evicted) {
      unmap(b);
    }
  }

  void empty() {
    std::list<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      evicted.swap(free_);
      cached_bytes_ = 0;
    }
    for (const Block& b : evicted) {
      unmap(b);
    }
  }

  LargeBlockCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(cached_bytes_), static_cast<int64_t>(free_.size()),
            static_cast<int64_t>(in_use_bytes_), reused_, mapped_};
  }

 private:
  // A fresh kBlockAlign-aligned mapping of `bytes`, advised as huge pages.
  static void* map(size_t bytes) {
#if defined(__linux__)
    const size_t span = bytes + kBlockAlign;
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      return nullptr;
    }
    const auto begin = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = round_up(begin, kBlockAlign);
    if (aligned > begin) {
      munmap(raw, aligned - begin);
    }
    const uintptr_t tail = aligned + bytes;
    if (begin + span > tail) {
      munmap(reinterpret_cast<void*>(tail), begin + span - tail);
    }
    void* data = reinterpret_cast<void*>(aligned);
#if defined(MADV_HUGEPAGE)
    madvise(data, bytes, MADV_HUGEPAGE);  // advice: a refusal changes nothing
#endif
    return data;
#else
    return c10::alloc_cpu(bytes);
#endif
  }

  static void unmap(const Block& b) {
#if defined(__linux__)
    munmap(b.data, b.bytes);
#else
    c10::free_cpu(b.data);
#endif
  }

  std::mutex mutex_;
  std::list<Block> free_;   // cached, least recently freed first
  std::list<Block> sizes_;  // taken: the sizes of the blocks live tensors hold
  size_t cached_bytes_ = 0;
  size_t in_use_bytes_ = 0;
  int64_t reused_ = 0;
  int64_t mapped_ = 0;
};

void give_back(void* data) {
  BlockCache::get().give(data);
}

// The CPU allocator of empty_large's tensors (and of their resizes): blocks of at least
// kMinBytes from the cache, smaller ones from PyTorch's CPU allocator.
class LargeBlockAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kMinBytes) {
      return c10::GetCPUAllocator()->allocate(n);
    }
    const size_t bytes = round_up(n, kBlockAlign);
    void* data = BlockCache::get().take(bytes);
    TORCH_CHECK(data != nullptr, "msrcnn: could not allocate ", n, " bytes of CPU memory");
    return {data, data, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }
};

LargeBlockAllocator large_block_allocator;

}  // namespace

at::Tensor empty_large(at::IntArrayRef sizes, const at::TensorOptions& options,
                       std::optional<at::MemoryFormat> memory_format) {
  if (options.device().type() != c10::DeviceType::CPU || options.pinned_memory()) {
    return at::empty(sizes, options, memory_format);
  }
  return at::detail::empty_generic(sizes, &large_block_allocator, c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), memory_format);
}

LargeBlockCacheStats large_block_cache_stats() {
  return BlockCache::get().stats();
}

void empty_cache() {
  BlockCache::get().empty();
}

void hold_large_block_cache_for_testing(double seconds) {
  hold_for_testing<&BlockCache::mutex>(seconds);
}

}  // namespace msrcnn
