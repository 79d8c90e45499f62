#pragma once

// conv3x3's transformed (packed) filters kept between calls for weights that do not change
// (inference, frozen layers).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace msrcnn::conv3x3 {

// transform() (the packed filters of `weight` for Winograd tile `tile`, rotated if `flip`),
// or the tensor an earlier call with the same weight returned. A weight is the same where its
// shape, dtype and every byte are (a fingerprint of 256 of its values finds the candidate, a
// comparison of all bytes with a kept copy confirms it): weights rebuilt at every call (frozen
// batch norm folded into the filters) are found again, and a weight changed in place, by any
// means, is not taken for its old self. A weight is kept the second time it is seen with the
// same contents, so training, whose weights change at every step, keeps none (and pays a
// fingerprint per call). Only contiguous weights are kept; at most kMaxPackedFilterBytes of
// packed filters, the least recently used dropped first. MSRCNN_CONV3X3_KEEP_FILTERS=0 turns
// keeping off (read once).
at::Tensor cached_packed_filter(const at::Tensor& weight, bool flip, int64_t tile,
                                const std::function<at::Tensor()>& transform);

constexpr int64_t kMaxPackedFilterBytes = int64_t{512} << 20;

// Drops every kept filter.
void clear_packed_filter_cache();

struct PackedFilterCacheStats {
  int64_t entries;
  int64_t bytes;  // of the packed filters kept
  int64_t hits;   // calls served from the cache (since the process started)
};

PackedFilterCacheStats packed_filter_cache_stats();

// Holds the cache's lock for `seconds` (tests: a fork() meanwhile must not copy it held).
void hold_packed_filter_cache_for_testing(double seconds);

}  // namespace msrcnn::conv3x3
