// NMS and Soft-NMS CPU entry points: checks, grouping by category, the final order; the
// loops are in nms_cpu_kernel.cpp (per CPU capability). Also the element-by-element test
// ops, which run the CUDA kernels' algorithms over the same element bodies.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "ops/nms/cpu/nms_cpu_kernel.h"
#include "ops/nms/nms_host.h"
#include "ops/nms/nms_math.h"

namespace msrcnn::nms {
namespace {

enum class Engine { Vectorised, ByElement };

struct Prepared {
  at::Tensor boxes;   // [N, 4], contiguous, accumulate type
  at::Tensor scores;  // [N], contiguous, accumulate type
  Groups groups;
};

Prepared prepare(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs) {
  const at::ScalarType acc = accumulate_type(boxes, scores);
  Prepared p{boxes.to(acc).contiguous(), scores.to(acc).contiguous(), {}};
  if (idxs.has_value()) {
    const at::Tensor categories = idxs->to(at::kLong).contiguous();
    p.groups = group_by_category(categories.const_data_ptr<int64_t>(), boxes.size(0));
  } else {
    p.groups = group_by_category(nullptr, boxes.size(0));
  }
  return p;
}

// One category's boxes in slot order as [n, 4] boxes, areas and scores (by-element engines).
template <typename T>
struct CategoryArrays {
  std::vector<T> boxes, areas, scores;
  std::vector<int64_t> index;

  CategoryArrays(const T* all_boxes, const T* all_scores, const std::vector<int64_t>& members, T offset) {
    for (int64_t k : members) {
      const T* b = all_boxes + k * 4;
      boxes.insert(boxes.end(), b, b + 4);
      areas.push_back(box_area(b[0], b[1], b[2], b[3], offset));
      scores.push_back(all_scores[k]);
      index.push_back(k);
    }
  }
};

std::vector<int64_t> members_of(const Groups& groups, int64_t g) {
  return {groups.order.begin() + groups.begin[g], groups.order.begin() + groups.begin[g + 1]};
}

// The CUDA Soft-NMS kernel's algorithm: alive scores, then per step the decay of every
// element (soft_decay_element) fused with the arg-max of the next one.
template <typename T>
Kept soft_nms_by_element(const T* boxes, const T* scores, const std::vector<int64_t>& members,
                         const SoftParamsOf<T>& p) {
  CategoryArrays<T> cat(boxes, scores, members, p.offset);
  const int64_t n = static_cast<int64_t>(members.size());
  const T dead = -std::numeric_limits<T>::infinity();
  for (T& s : cat.scores) {
    s = soft_survives(s, p.score_threshold) ? s : dead;
  }
  Kept kept;
  int64_t selected = -1;
  while (true) {
    T best = dead;
    int64_t best_pos = n;
    for (int64_t i = 0; i < n; ++i) {
      if (selected >= 0) {
        cat.scores[i] = soft_decay_element(i, cat.boxes.data(), cat.areas.data(), cat.scores.data(), selected, p);
      }
      if (cat.scores[i] > dead && soft_better(cat.scores[i], i, best, best_pos)) {
        best = cat.scores[i];
        best_pos = i;
      }
    }
    if (best_pos == n) {
      return kept;
    }
    kept.indices.push_back(cat.index[best_pos]);
    kept.scores.push_back(static_cast<double>(best));
    selected = best_pos;
  }
}

// The CUDA hard-NMS kernels' algorithm: boxes by decreasing score, the suppression mask
// words (nms_mask_word), then the sequential reduction over the rows.
template <typename T>
Kept nms_by_element(const T* boxes, const T* scores, std::vector<int64_t> members, T iou_threshold, T offset) {
  std::stable_sort(members.begin(), members.end(), [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  CategoryArrays<T> cat(boxes, scores, members, offset);
  const int64_t n = static_cast<int64_t>(members.size());
  const int64_t words = (n + kBoxesPerWord - 1) / kBoxesPerWord;
  std::vector<uint64_t> mask(n * words);
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t word = 0; word < words; ++word) {
      mask[row * words + word] =
          nms_mask_word(row, word, cat.boxes.data(), cat.areas.data(), n, iou_threshold, offset);
    }
  }
  std::vector<uint64_t> removed(words, 0);
  Kept kept;
  for (int64_t i = 0; i < n; ++i) {
    if (!((removed[i / kBoxesPerWord] >> (i % kBoxesPerWord)) & 1)) {
      kept.indices.push_back(cat.index[i]);
      kept.scores.push_back(static_cast<double>(cat.scores[i]));
      for (int64_t word = 0; word < words; ++word) {
        removed[word] |= mask[i * words + word];
      }
    }
  }
  return kept;
}

// Concatenates the categories' results; with several categories, by decreasing score.
std::tuple<at::Tensor, at::Tensor> assemble(std::vector<Kept> kept, bool sort, const at::Tensor& like_scores) {
  Kept all;
  for (Kept& k : kept) {
    all.indices.insert(all.indices.end(), k.indices.begin(), k.indices.end());
    all.scores.insert(all.scores.end(), k.scores.begin(), k.scores.end());
  }
  if (sort) {
    sort_by_score(all.scores, all.indices);
  }
  const int64_t n = static_cast<int64_t>(all.indices.size());
  at::Tensor indices = at::empty({n}, like_scores.options().dtype(at::kLong));
  std::copy(all.indices.begin(), all.indices.end(), indices.mutable_data_ptr<int64_t>());
  at::Tensor scores = at::empty({n}, like_scores.options().dtype(at::kDouble));
  std::copy(all.scores.begin(), all.scores.end(), scores.mutable_data_ptr<double>());
  return {indices, scores.to(like_scores.scalar_type())};
}

template <Engine engine>
at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                   double iou_threshold, double offset, const char* op) {
  check_inputs(boxes, scores, idxs, iou_threshold, offset, op);
  check_device_type(boxes, c10::DeviceType::CPU, op, "boxes");
  const Prepared p = prepare(boxes, scores, idxs);
  std::vector<Kept> kept;
  if constexpr (engine == Engine::Vectorised) {
    kept = MSRCNN_CPU_DISPATCH_UP_TO_AVX2(::msrcnn::nms, nms_kernel, p.boxes, p.scores, p.groups, iou_threshold, offset);
  } else {
    AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "nms_by_element", [&] {
      for (int64_t g = 0; g < p.groups.count(); ++g) {
        kept.push_back(nms_by_element(p.boxes.const_data_ptr<scalar_t>(), p.scores.const_data_ptr<scalar_t>(),
                                      members_of(p.groups, g), threshold_for_greater<scalar_t>(iou_threshold),
                                      static_cast<scalar_t>(offset)));
      }
    });
  }
  return std::get<0>(assemble(std::move(kept), p.groups.count() > 1, scores));
}

template <Engine engine>
std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs, double iou_threshold,
    double sigma, double score_threshold, const std::string& method, double offset, const char* op) {
  check_inputs(boxes, scores, idxs, iou_threshold, offset, op);
  check_device_type(boxes, c10::DeviceType::CPU, op, "boxes");
  const SoftParams params = make_soft_params(iou_threshold, sigma, score_threshold, method, offset, op);
  const Prepared p = prepare(boxes, scores, idxs);
  std::vector<Kept> kept;
  if constexpr (engine == Engine::Vectorised) {
    kept = MSRCNN_CPU_DISPATCH_AVX512_ON_AMD(::msrcnn::nms, soft_nms_kernel, p.boxes, p.scores, p.groups, params);
  } else {
    AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "soft_nms_by_element", [&] {
      for (int64_t g = 0; g < p.groups.count(); ++g) {
        kept.push_back(soft_nms_by_element(p.boxes.const_data_ptr<scalar_t>(), p.scores.const_data_ptr<scalar_t>(),
                                           members_of(p.groups, g), soft_params_as<scalar_t>(params)));
      }
    });
  }
  // One category keeps its selection order (already by decreasing score).
  return assemble(std::move(kept), idxs.has_value(), scores);
}

at::Tensor nms_op(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, double offset) {
  return nms_cpu<Engine::Vectorised>(boxes, scores, std::nullopt, iou_threshold, offset, "msrcnn::nms");
}

template <Engine engine>
at::Tensor batched_nms_op(
    const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, double iou_threshold, double offset) {
  return nms_cpu<engine>(boxes, scores, idxs, iou_threshold, offset, "msrcnn::batched_nms");
}

std::tuple<at::Tensor, at::Tensor> soft_nms_op(
    const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, double sigma, double score_threshold,
    c10::string_view method, double offset) {
  return soft_nms_cpu<Engine::Vectorised>(
      boxes, scores, std::nullopt, iou_threshold, sigma, score_threshold, std::string(method), offset,
      "msrcnn::soft_nms");
}

template <Engine engine>
std::tuple<at::Tensor, at::Tensor> batched_soft_nms_op(
    const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, double iou_threshold, double sigma,
    double score_threshold, c10::string_view method, double offset) {
  return soft_nms_cpu<engine>(
      boxes, scores, idxs, iou_threshold, sigma, score_threshold, std::string(method), offset,
      "msrcnn::batched_soft_nms");
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("nms", &nms_op);
  m.impl("batched_nms", &batched_nms_op<Engine::Vectorised>);
  m.impl("soft_nms", &soft_nms_op);
  m.impl("batched_soft_nms", &batched_soft_nms_op<Engine::Vectorised>);
}

TORCH_LIBRARY_IMPL(msrcnn_testing, CPU, m) {
  m.impl("batched_nms_by_element", &batched_nms_op<Engine::ByElement>);
  m.impl("batched_soft_nms_by_element", &batched_soft_nms_op<Engine::ByElement>);
}

}  // namespace msrcnn::nms
