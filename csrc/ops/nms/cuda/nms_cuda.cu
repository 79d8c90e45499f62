// NMS and Soft-NMS CUDA kernels over nms_math.h.
//
// Boxes are sorted so that each category is one contiguous range (a "group").
// Soft-NMS: one block per group; each step every thread decays its boxes by the selected
// one (soft_decay_element) and the block reduces the next arg-max, so a step is one pass and
// one reduction, never a launch. Hard NMS: within each group (sorted by decreasing score) a
// 64-box tile kernel writes the suppression mask words (nms_mask_word) of the group's own
// rows and columns only, then one block per group walks its rows and collects the kept boxes.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/unique_consecutive.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "common/checks.h"
#include "common/cuda/launch.cuh"
#include "ops/nms/nms_host.h"
#include "ops/nms/nms_math.h"

namespace msrcnn::nms {
namespace {

constexpr int kSoftThreads = 256;

// Groups of the sorted boxes: start[g] .. start[g + 1] on the device, and on the host.
struct DeviceGroups {
  at::Tensor start;            // int64 [G + 1], device
  std::vector<int64_t> sizes;  // host
};

DeviceGroups groups_of_sorted(const at::Tensor& sorted_categories) {
  const int64_t n = sorted_categories.size(0);
  at::Tensor counts = std::get<2>(at::unique_consecutive(sorted_categories, false, true));
  at::Tensor start = at::zeros({counts.size(0) + 1}, counts.options());
  if (n > 0) {
    start.narrow(0, 1, counts.size(0)).copy_(at::cumsum(counts, 0));
  }
  const at::Tensor host = counts.cpu();
  return {start, std::vector<int64_t>(host.const_data_ptr<int64_t>(), host.const_data_ptr<int64_t>() + host.numel())};
}

// (score, position) arg-max over a block; equal scores: the lower position (soft_better).
template <typename T>
__device__ void block_argmax(T& score, int64_t& pos) {
  __shared__ T scores[kSoftThreads / 32];
  __shared__ int64_t positions[kSoftThreads / 32];
  for (int delta = 16; delta > 0; delta /= 2) {
    const T other = __shfl_down_sync(0xffffffff, score, delta);
    const int64_t other_pos = __shfl_down_sync(0xffffffff, pos, delta);
    if (soft_better(other, other_pos, score, pos)) {
      score = other;
      pos = other_pos;
    }
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) {
    scores[warp] = score;
    positions[warp] = pos;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kSoftThreads / 32; ++w) {
      if (soft_better(scores[w], positions[w], scores[0], positions[0])) {
        scores[0] = scores[w];
        positions[0] = positions[w];
      }
    }
  }
  __syncthreads();
  score = scores[0];
  pos = positions[0];
  __syncthreads();
}

// One block per group. scores: the working scores (below the threshold already -inf).
template <typename T>
__global__ void soft_nms_cuda_kernel(
    const T* boxes, const T* areas, T* scores, const int64_t* group_start, SoftParamsOf<T> params, int64_t* kept_pos,
    T* kept_scores, int64_t* kept_count) {
  const int64_t first = group_start[blockIdx.x];
  const int64_t n = group_start[blockIdx.x + 1] - first;
  const T* group_boxes = boxes + first * 4;
  const T* group_areas = areas + first;
  T* group_scores = scores + first;
  const T dead = -INFINITY;
  int64_t count = 0;
  int64_t selected = -1;
  while (true) {
    T best = dead;
    int64_t best_pos = n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      T score = group_scores[i];
      if (selected >= 0) {
        score = soft_decay_element(i, group_boxes, group_areas, group_scores, selected, params);
        group_scores[i] = score;
      }
      if (score > dead && soft_better(score, i, best, best_pos)) {
        best = score;
        best_pos = i;
      }
    }
    block_argmax(best, best_pos);
    if (best_pos == n) {
      break;
    }
    if (threadIdx.x == 0) {
      kept_pos[first + count] = best_pos;
      kept_scores[first + count] = best;
    }
    ++count;
    selected = best_pos;
  }
  if (threadIdx.x == 0) {
    kept_count[blockIdx.x] = count;
  }
}

// One block of kBoxesPerWord threads per (group, row block, column word) tile.
template <typename T>
__global__ void nms_mask_cuda_kernel(
    const T* boxes, const T* areas, const int64_t* group_start, const int64_t* tile_start, const int64_t* mask_start,
    int64_t num_groups, T iou_threshold, T offset, uint64_t* mask) {
  // The group of this tile: the last g with tile_start[g] <= blockIdx.x.
  int64_t lo = 0;
  int64_t hi = num_groups - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (tile_start[mid] <= static_cast<int64_t>(blockIdx.x)) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int64_t g = lo;
  const int64_t first = group_start[g];
  const int64_t n = group_start[g + 1] - first;
  const int64_t words = (n + kBoxesPerWord - 1) / kBoxesPerWord;
  const int64_t tile = blockIdx.x - tile_start[g];
  const int64_t row = (tile / words) * kBoxesPerWord + threadIdx.x;
  const int64_t word = tile % words;
  if (row < n) {
    mask[mask_start[g] + row * words + word] =
        nms_mask_word(row, word, boxes + first * 4, areas + first, n, iou_threshold, offset);
  }
}

// One block per group: walks the rows in order, keeping a row unless a kept row removed it.
__global__ void nms_reduce_cuda_kernel(
    const int64_t* group_start, const int64_t* mask_start, const int64_t* word_start, const uint64_t* mask,
    uint64_t* removed, bool* keep) {
  const int64_t first = group_start[blockIdx.x];
  const int64_t n = group_start[blockIdx.x + 1] - first;
  const int64_t words = (n + kBoxesPerWord - 1) / kBoxesPerWord;
  uint64_t* group_removed = removed + word_start[blockIdx.x];
  const uint64_t* group_mask = mask + mask_start[blockIdx.x];
  for (int64_t i = 0; i < n; ++i) {
    const bool kept = !((group_removed[i / kBoxesPerWord] >> (i % kBoxesPerWord)) & 1);
    __syncthreads();
    if (kept) {
      for (int64_t w = threadIdx.x; w < words; w += blockDim.x) {
        group_removed[w] |= group_mask[i * words + w];
      }
      if (threadIdx.x == 0) {
        keep[first + i] = true;
      }
    }
    __syncthreads();
  }
}

// Boxes in group order: by category (stable), then by `key` (descending score for hard NMS,
// input order for Soft-NMS). Returns the permutation.
at::Tensor group_order(const at::Tensor& scores, const std::optional<at::Tensor>& idxs, bool by_score) {
  const int64_t n = scores.size(0);
  at::Tensor order = by_score ? std::get<1>(at::sort(scores, /*stable=*/true, 0, /*descending=*/true))
                              : at::arange(n, scores.options().dtype(at::kLong));
  if (idxs.has_value()) {
    const at::Tensor categories = idxs->to(at::kLong).index_select(0, order);
    order = order.index_select(0, std::get<1>(at::sort(categories, /*stable=*/true, 0, false)));
  }
  return order;
}

at::Tensor device_longs(const std::vector<int64_t>& values, const c10::Device& device) {
  at::Tensor host = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(at::kLong));
  std::copy(values.begin(), values.end(), host.mutable_data_ptr<int64_t>());
  return host.to(device);
}

at::Tensor sorted_categories(const std::optional<at::Tensor>& idxs, const at::Tensor& order) {
  return idxs.has_value() ? idxs->to(at::kLong).index_select(0, order) : at::zeros_like(order);
}

// Kept (input index, score) pairs by decreasing score, equal scores by increasing index.
std::tuple<at::Tensor, at::Tensor> sort_kept(const at::Tensor& indices, const at::Tensor& scores) {
  const at::Tensor by_index = std::get<1>(at::sort(indices, /*stable=*/true, 0, false));
  const at::Tensor s = scores.index_select(0, by_index);
  const at::Tensor by_score = std::get<1>(at::sort(s, /*stable=*/true, 0, /*descending=*/true));
  const at::Tensor order = by_index.index_select(0, by_score);
  return {indices.index_select(0, order), scores.index_select(0, order)};
}

template <typename T>
at::Tensor areas_of(const at::Tensor& boxes, double offset) {
  const auto off = static_cast<T>(offset);
  return boxes.select(1, 2).sub(boxes.select(1, 0)).add(off).mul(boxes.select(1, 3).sub(boxes.select(1, 1)).add(off));
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                    double iou_threshold, double offset, const char* op) {
  check_inputs(boxes, scores, idxs, iou_threshold, offset, op);
  check_device_type(boxes, c10::DeviceType::CUDA, op, "boxes");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  const at::ScalarType acc = accumulate_type(boxes, scores);
  const at::Tensor acc_scores = scores.to(acc);
  const at::Tensor order = group_order(acc_scores, idxs, /*by_score=*/true);
  const at::Tensor sorted_boxes = boxes.to(acc).index_select(0, order).contiguous();
  const DeviceGroups groups = groups_of_sorted(sorted_categories(idxs, order));
  const int64_t num_groups = static_cast<int64_t>(groups.sizes.size());
  // Per group: its tiles (row blocks x column words), mask words (rows x words) and words.
  std::vector<int64_t> tile_start(num_groups + 1, 0);
  std::vector<int64_t> mask_start(num_groups + 1, 0);
  std::vector<int64_t> word_start(num_groups + 1, 0);
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t words = (groups.sizes[g] + kBoxesPerWord - 1) / kBoxesPerWord;
    tile_start[g + 1] = tile_start[g] + words * words;
    mask_start[g + 1] = mask_start[g] + groups.sizes[g] * words;
    word_start[g + 1] = word_start[g] + words;
  }
  const auto long_options = boxes.options().dtype(at::kLong);
  const at::Tensor tile_start_d = device_longs(tile_start, boxes.device());
  const at::Tensor mask_start_d = device_longs(mask_start, boxes.device());
  const at::Tensor word_start_d = device_longs(word_start, boxes.device());
  at::Tensor mask = at::empty({mask_start[num_groups]}, long_options);
  at::Tensor removed = at::zeros({word_start[num_groups]}, long_options);
  at::Tensor keep = at::zeros({n}, boxes.options().dtype(at::kBool));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(acc, "nms_cuda", [&] {
    const at::Tensor areas = areas_of<scalar_t>(sorted_boxes, offset).contiguous();
    nms_mask_cuda_kernel<scalar_t><<<tile_start[num_groups], kBoxesPerWord, 0, stream>>>(
        sorted_boxes.const_data_ptr<scalar_t>(), areas.const_data_ptr<scalar_t>(),
        groups.start.const_data_ptr<int64_t>(), tile_start_d.const_data_ptr<int64_t>(),
        mask_start_d.const_data_ptr<int64_t>(), num_groups, threshold_for_greater<scalar_t>(iou_threshold),
        static_cast<scalar_t>(offset), reinterpret_cast<uint64_t*>(mask.mutable_data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  nms_reduce_cuda_kernel<<<num_groups, kThreadsPerBlock, 0, stream>>>(
      groups.start.const_data_ptr<int64_t>(), mask_start_d.const_data_ptr<int64_t>(),
      word_start_d.const_data_ptr<int64_t>(), reinterpret_cast<const uint64_t*>(mask.const_data_ptr<int64_t>()),
      reinterpret_cast<uint64_t*>(removed.mutable_data_ptr<int64_t>()), keep.mutable_data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor kept = order.index_select(0, at::nonzero(keep).flatten());
  if (num_groups <= 1) {
    return kept;  // one category: already by decreasing score
  }
  return std::get<0>(sort_kept(kept, acc_scores.index_select(0, kept)));
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs, double iou_threshold,
    double sigma, double score_threshold, const std::string& method, double offset, const char* op) {
  check_inputs(boxes, scores, idxs, iou_threshold, offset, op);
  check_device_type(boxes, c10::DeviceType::CUDA, op, "boxes");
  const SoftParams params = make_soft_params(iou_threshold, sigma, score_threshold, method, offset, op);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  }
  const at::ScalarType acc = accumulate_type(boxes, scores);
  const at::Tensor order = group_order(scores, idxs, /*by_score=*/false);
  const at::Tensor sorted_boxes = boxes.to(acc).index_select(0, order).contiguous();
  at::Tensor work = scores.to(acc).index_select(0, order).contiguous();
  const DeviceGroups groups = groups_of_sorted(sorted_categories(idxs, order));
  const int64_t num_groups = static_cast<int64_t>(groups.sizes.size());
  at::Tensor kept_pos = at::empty({n}, boxes.options().dtype(at::kLong));
  at::Tensor kept_scores = at::empty({n}, work.options());
  at::Tensor kept_count = at::empty({num_groups}, boxes.options().dtype(at::kLong));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(acc, "soft_nms_cuda", [&] {
    const at::Tensor areas = areas_of<scalar_t>(sorted_boxes, offset).contiguous();
    const SoftParamsOf<scalar_t> typed = soft_params_as<scalar_t>(params);
    work.masked_fill_(work.lt(typed.score_threshold), -std::numeric_limits<double>::infinity());
    soft_nms_cuda_kernel<scalar_t><<<num_groups, kSoftThreads, 0, stream>>>(
        sorted_boxes.const_data_ptr<scalar_t>(), areas.const_data_ptr<scalar_t>(), work.mutable_data_ptr<scalar_t>(),
        groups.start.const_data_ptr<int64_t>(), typed, kept_pos.mutable_data_ptr<int64_t>(),
        kept_scores.mutable_data_ptr<scalar_t>(), kept_count.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  // Slot j of group g holds its (j - start[g])-th kept box while that is below count[g].
  const at::Tensor slot = at::arange(n, kept_pos.options());
  const at::Tensor group_of_slot =
      at::repeat_interleave(at::arange(num_groups, kept_pos.options()), device_longs(groups.sizes, boxes.device()));
  const at::Tensor start = groups.start.narrow(0, 0, num_groups).index_select(0, group_of_slot);
  const at::Tensor valid = at::nonzero(slot.sub(start).lt(kept_count.index_select(0, group_of_slot))).flatten();
  const at::Tensor positions = kept_pos.index_select(0, valid).add(start.index_select(0, valid));
  at::Tensor indices = order.index_select(0, positions);
  at::Tensor new_scores = kept_scores.index_select(0, valid);
  if (num_groups > 1) {
    std::tie(indices, new_scores) = sort_kept(indices, new_scores);
  }
  return {indices, new_scores.to(scores.scalar_type())};
}

at::Tensor nms_op(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, double offset) {
  return nms_cuda(boxes, scores, std::nullopt, iou_threshold, offset, "msrcnn::nms");
}

at::Tensor batched_nms_op(
    const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, double iou_threshold, double offset) {
  return nms_cuda(boxes, scores, idxs, iou_threshold, offset, "msrcnn::batched_nms");
}

std::tuple<at::Tensor, at::Tensor> soft_nms_op(
    const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, double sigma, double score_threshold,
    c10::string_view method, double offset) {
  return soft_nms_cuda(
      boxes, scores, std::nullopt, iou_threshold, sigma, score_threshold, std::string(method), offset,
      "msrcnn::soft_nms");
}

std::tuple<at::Tensor, at::Tensor> batched_soft_nms_op(
    const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, double iou_threshold, double sigma,
    double score_threshold, c10::string_view method, double offset) {
  return soft_nms_cuda(
      boxes, scores, idxs, iou_threshold, sigma, score_threshold, std::string(method), offset,
      "msrcnn::batched_soft_nms");
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("nms", &nms_op);
  m.impl("batched_nms", &batched_nms_op);
  m.impl("soft_nms", &soft_nms_op);
  m.impl("batched_soft_nms", &batched_soft_nms_op);
}

}  // namespace msrcnn::nms
