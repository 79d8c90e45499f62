#include "ops/conv3x3/cpu/packed_filter_cache.h"

#include "common/fork_safe.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <vector>

namespace msrcnn::conv3x3 {
namespace {

constexpr int64_t kFingerprintValues = 256;
// Weights seen once, remembered (without a copy) so that a second sighting keeps them.
constexpr size_t kMaxSeen = 512;

// What a kept weight must match before its bytes are compared.
struct Key {
  std::vector<int64_t> sizes;
  at::ScalarType dtype;
  bool flip;
  int64_t tile;
  uint64_t fingerprint;

  bool operator==(const Key&) const = default;
};

struct Entry {
  Key key;
  at::Tensor weight;  // a copy of the weight's bytes
  at::Tensor packed;
};

// FNV-1a over the bytes of up to kFingerprintValues values spread over the weight.
uint64_t fingerprint_of(const at::Tensor& weight) {
  const auto* bytes = static_cast<const unsigned char*>(weight.const_data_ptr());
  const int64_t count = weight.numel();
  const int64_t item = weight.element_size();
  const int64_t step = std::max<int64_t>(1, count / kFingerprintValues);
  uint64_t hash = 1469598103934665603ull;
  for (int64_t i = 0; i < count; i += step) {
    for (int64_t b = 0; b < item; ++b) {
      hash = (hash ^ bytes[i * item + b]) * 1099511628211ull;
    }
  }
  return hash;
}

class PackedFilterCache {
 public:
  static PackedFilterCache& get() {
    static PackedFilterCache* cache = [] {  // never destroyed (exit order)
      auto* created = new PackedFilterCache();
      hold_across_fork<&PackedFilterCache::mutex>();
      return created;
    }();
    return *cache;
  }

  static std::mutex& mutex() {
    return get().mutex_;
  }

  // The packed filters kept for `weight` (of `key`), or an undefined tensor.
  at::Tensor find(const Key& key, const at::Tensor& weight) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->key == key && std::memcmp(it->weight.const_data_ptr(), weight.const_data_ptr(), weight.nbytes()) == 0) {
        entries_.splice(entries_.begin(), entries_, it);  // most recently used first
        ++hits_;
        return it->packed;
      }
    }
    return at::Tensor();
  }

  // Whether a weight of `key` was seen before (and not kept); remembers it if not.
  bool seen_before(const Key& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = seen_.begin(); it != seen_.end(); ++it) {
      if (*it == key) {
        seen_.erase(it);
        return true;
      }
    }
    seen_.push_front(key);
    if (seen_.size() > kMaxSeen) {
      seen_.pop_back();
    }
    return false;
  }

  void keep(const Key& key, const at::Tensor& weight, const at::Tensor& packed) {
    Entry entry{key, at::empty(weight.sizes(), weight.options()), packed};
    std::memcpy(entry.weight.mutable_data_ptr(), weight.const_data_ptr(), weight.nbytes());
    std::list<Entry> dropped;  // freed after the lock is released
    std::lock_guard<std::mutex> lock(mutex_);
    bytes_ += static_cast<int64_t>(packed.nbytes());
    entries_.push_front(std::move(entry));
    while (bytes_ > kMaxPackedFilterBytes && !entries_.empty()) {
      bytes_ -= static_cast<int64_t>(entries_.back().packed.nbytes());
      dropped.splice(dropped.end(), entries_, std::prev(entries_.end()));
    }
  }

  PackedFilterCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(entries_.size()), bytes_, hits_};
  }

  void clear() {
    std::list<Entry> dropped;
    std::lock_guard<std::mutex> lock(mutex_);
    dropped.swap(entries_);
    seen_.clear();
    bytes_ = 0;
  }

 private:
  std::mutex mutex_;
  std::list<Entry> entries_;  // kept, most recently used first
  std::list<Key> seen_;       // seen once, not kept
  int64_t bytes_ = 0;
  int64_t hits_ = 0;
};

}  // namespace

bool keeping_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("MSRCNN_CONV3X3_KEEP_FILTERS");
    return value == nullptr || std::string(value) != "0";
  }();
  return enabled;
}

at::Tensor cached_packed_filter(const at::Tensor& weight, bool flip, int64_t tile,
                                const std::function<at::Tensor()>& transform) {
  if (!keeping_enabled() || !weight.is_contiguous() || weight.numel() == 0) {
    return transform();
  }
  PackedFilterCache& cache = PackedFilterCache::get();
  const Key key{weight.sizes().vec(), weight.scalar_type(), flip, tile, fingerprint_of(weight)};
  at::Tensor packed = cache.find(key, weight);
  if (!packed.defined()) {
    packed = transform();
    if (cache.seen_before(key)) {
      cache.keep(key, weight, packed);
    }
  }
  return packed;
}

PackedFilterCacheStats packed_filter_cache_stats() {
  return PackedFilterCache::get().stats();
}

void clear_packed_filter_cache() {
  PackedFilterCache::get().clear();
}

void hold_packed_filter_cache_for_testing(double seconds) {
  hold_for_testing<&PackedFilterCache::mutex>(seconds);
}

}  // namespace msrcnn::conv3x3
