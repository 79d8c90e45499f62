// NMS and Soft-NMS CPU kernels. Compiled once per CPU capability (CPU_CAPABILITY is DEFAULT,
// AVX2 or AVX512; nms_cpu_kernel.h says which build each runs where); at::vec::Vectorized
// follows it.
//
// Each category's boxes are held as a structure of arrays. Soft-NMS: one vectorised pass per
// selected box decays every remaining score, drops the boxes that fall below the threshold
// (their score becomes -inf) and finds the next maximum at the same time; dropped boxes are
// compacted away once they are half of the array. Hard NMS: boxes sorted by score, each kept
// box suppresses the later ones in one vectorised pass.

#include "ops/nms/cpu/nms_cpu_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

namespace msrcnn::nms::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// The boxes of one category as a structure of arrays, padded to whole vectors with dead,
// empty boxes.
template <typename T>
struct Category {
  std::vector<T> x1, y1, x2, y2, area, score;
  std::vector<int64_t> index;  // input index of each slot
  int64_t size = 0;            // slots in use (live or dead)

  void resize(int64_t n) {
    constexpr int64_t V = Vectorized<T>::size();
    const int64_t padded = (n + V - 1) / V * V + V;  // one spare vector for unaligned tails
    for (auto* a : {&x1, &y1, &x2, &y2, &area}) {
      a->assign(padded, static_cast<T>(0));
    }
    score.assign(padded, -std::numeric_limits<T>::infinity());
    index.assign(padded, -1);
    size = n;
  }

  void set(int64_t slot, const T* box, T box_score, int64_t input_index, T offset) {
    x1[slot] = box[0];
    y1[slot] = box[1];
    x2[slot] = box[2];
    y2[slot] = box[3];
    area[slot] = box_area(box[0], box[1], box[2], box[3], offset);
    score[slot] = box_score;
    index[slot] = input_index;
  }

  // Moves the live slots to the front, in order.
  void compact() {
    int64_t out = 0;
    for (int64_t i = 0; i < size; ++i) {
      if (score[i] > -std::numeric_limits<T>::infinity()) {
        x1[out] = x1[i];
        y1[out] = y1[i];
        x2[out] = x2[i];
        y2[out] = y2[i];
        area[out] = area[i];
        score[out] = score[i];
        index[out] = index[i];
        ++out;
      }
    }
    std::fill(score.begin() + out, score.begin() + size, -std::numeric_limits<T>::infinity());
    size = out;
  }
};

// IoU of the boxes at `i` (a vector of them) with one selected box, as box_iou computes it.
template <typename T>
inline Vectorized<T> iou_with(const Category<T>& cat, int64_t i, const T* sel, T sel_area, T offset) {
  using Vec = Vectorized<T>;
  const Vec zero(static_cast<T>(0));
  const Vec off(offset);
  const Vec left = at::vec::maximum(Vec(sel[0]), Vec::loadu(cat.x1.data() + i));
  const Vec top = at::vec::maximum(Vec(sel[1]), Vec::loadu(cat.y1.data() + i));
  const Vec right = at::vec::minimum(Vec(sel[2]), Vec::loadu(cat.x2.data() + i));
  const Vec bottom = at::vec::minimum(Vec(sel[3]), Vec::loadu(cat.y2.data() + i));
  const Vec w = at::vec::maximum(right - left + off, zero);
  const Vec h = at::vec::maximum(bottom - top + off, zero);
  const Vec inter = w * h;
  const Vec uni = Vec(sel_area) + Vec::loadu(cat.area.data() + i) - inter;
  return Vec::blendv(zero, inter / uni, uni > zero);
}

template <SoftMethod method, typename T>
inline Vectorized<T> soft_weights(const Vectorized<T>& iou, const SoftParamsOf<T>& p) {
  using Vec = Vectorized<T>;
  const Vec one(static_cast<T>(1));
  if constexpr (method == SoftMethod::kGaussian) {
    return ((iou * iou).neg() / Vec(p.sigma)).exp();
  } else if constexpr (method == SoftMethod::kLinear) {
    return Vec::blendv(one, one - iou, iou >= Vec(p.iou_threshold));
  } else {
    return Vec::blendv(one, Vec(static_cast<T>(0)), iou >= Vec(p.iou_threshold));
  }
}

template <typename T>
struct Best {
  T score;
  int64_t slot;
  int64_t alive;
};

// Decays every slot by its IoU with `sel` (when given), kills the slots that fall below the
// threshold, and returns the best remaining slot (equal scores: the lower slot) and the
// number alive.
template <SoftMethod method, typename T>
Best<T> decay_and_select(Category<T>& cat, const T* sel, T sel_area, const SoftParamsOf<T>& p) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const T minus_inf = -std::numeric_limits<T>::infinity();
  const Vec dead(minus_inf);
  const Vec threshold(p.score_threshold);
  const Vec one(static_cast<T>(1));
  Vec best = dead;
  Vec best_slot(static_cast<T>(0));
  Vec slot = Vec::arange(static_cast<T>(0), static_cast<T>(1));
  const Vec step(static_cast<T>(V));
  Vec alive_count(static_cast<T>(0));
  for (int64_t i = 0; i < cat.size; i += V) {
    Vec score = Vec::loadu(cat.score.data() + i);
    if (sel != nullptr) {
      score = score * soft_weights<method>(iou_with(cat, i, sel, sel_area, p.offset), p);
    }
    const Vec alive = score >= threshold;
    score = Vec::blendv(dead, score, alive);
    score.store(cat.score.data() + i);
    const Vec better = score > best;
    best = Vec::blendv(best, score, better);
    best_slot = Vec::blendv(best_slot, slot, better);
    alive_count = alive_count + (alive & one);
    slot = slot + step;
  }
  T lanes[V];
  T slots[V];
  T counts[V];
  best.store(lanes);
  best_slot.store(slots);
  alive_count.store(counts);
  Best<T> result{minus_inf, -1, 0};
  for (int64_t l = 0; l < V; ++l) {
    const int64_t s = static_cast<int64_t>(slots[l]);
    if (lanes[l] > minus_inf && soft_better(lanes[l], s, result.score, result.slot < 0 ? cat.size : result.slot)) {
      result.score = lanes[l];
      result.slot = s;
    }
    result.alive += static_cast<int64_t>(counts[l]);
  }
  return result;
}

template <SoftMethod method, typename T>
Kept soft_nms_category(Category<T>& cat, const SoftParamsOf<T>& p) {
  constexpr int64_t V = Vectorized<T>::size();
  Kept kept;
  Best<T> best = decay_and_select<method>(cat, static_cast<const T*>(nullptr), static_cast<T>(0), p);
  while (best.slot >= 0) {
    const T sel[4] = {cat.x1[best.slot], cat.y1[best.slot], cat.x2[best.slot], cat.y2[best.slot]};
    const T sel_area = cat.area[best.slot];
    kept.indices.push_back(cat.index[best.slot]);
    kept.scores.push_back(static_cast<double>(best.score));
    cat.score[best.slot] = -std::numeric_limits<T>::infinity();
    if (best.alive <= 1) {
      break;
    }
    if (2 * (best.alive - 1) < cat.size && cat.size > 4 * V) {
      cat.compact();
    }
    best = decay_and_select<method>(cat, sel, sel_area, p);
  }
  return kept;
}

// The boxes of group g into a Category, in input order; boxes below the threshold start dead.
template <typename T>
void load_category(const T* boxes, const T* scores, const Groups& groups, int64_t g, T score_threshold, T offset,
                   Category<T>& cat) {
  const int64_t first = groups.begin[g];
  const int64_t n = groups.begin[g + 1] - first;
  cat.resize(n);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t k = groups.order[first + s];
    const T score = soft_survives(scores[k], score_threshold) ? scores[k] : -std::numeric_limits<T>::infinity();
    cat.set(s, boxes + k * 4, score, k, offset);
  }
}

template <typename T>
std::vector<Kept> soft_nms_impl(const T* boxes, const T* scores, const Groups& groups, const SoftParamsOf<T>& p) {
  std::vector<Kept> kept(groups.count());
  at::parallel_for(0, groups.count(), 1, [&](int64_t begin, int64_t end) {
    Category<T> cat;
    for (int64_t g = begin; g < end; ++g) {
      TORCH_CHECK_VALUE(
          groups.begin[g + 1] - groups.begin[g] < (int64_t{1} << std::numeric_limits<T>::digits),
          "msrcnn::soft_nms: too many boxes in one category for ", sizeof(T) == 4 ? "float32" : "float64");
      load_category(boxes, scores, groups, g, p.score_threshold, p.offset, cat);
      switch (p.method) {
        case SoftMethod::kGaussian:
          kept[g] = soft_nms_category<SoftMethod::kGaussian>(cat, p);
          break;
        case SoftMethod::kLinear:
          kept[g] = soft_nms_category<SoftMethod::kLinear>(cat, p);
          break;
        default:
          kept[g] = soft_nms_category<SoftMethod::kHard>(cat, p);
      }
    }
  });
  return kept;
}

// Hard NMS of one category: boxes by decreasing score (equal scores: input order).
template <typename T>
Kept nms_category(const T* boxes, const T* scores, const Groups& groups, int64_t g, T iou_threshold, T offset,
                  Category<T>& cat) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const int64_t first = groups.begin[g];
  const int64_t n = groups.begin[g + 1] - first;
  std::vector<int64_t> order(groups.order.begin() + first, groups.order.begin() + first + n);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  cat.resize(n);
  for (int64_t s = 0; s < n; ++s) {
    cat.set(s, boxes + order[s] * 4, scores[order[s]], order[s], offset);
  }
  // score[] becomes the suppression flag: 0 = live, 1 = suppressed.
  std::fill(cat.score.begin(), cat.score.end(), static_cast<T>(0));
  const Vec one(static_cast<T>(1));
  const Vec threshold(iou_threshold);
  Kept kept;
  for (int64_t i = 0; i < n; ++i) {
    if (cat.score[i] != static_cast<T>(0)) {
      continue;
    }
    kept.indices.push_back(cat.index[i]);
    kept.scores.push_back(static_cast<double>(scores[cat.index[i]]));
    const T sel[4] = {cat.x1[i], cat.y1[i], cat.x2[i], cat.y2[i]};
    for (int64_t j = i + 1; j < n; j += V) {
      const Vec suppressed = Vec::loadu(cat.score.data() + j);
      const Vec overlaps = iou_with(cat, j, sel, cat.area[i], offset) > threshold;
      at::vec::maximum(suppressed, overlaps & one).store(cat.score.data() + j);
    }
  }
  return kept;
}

template <typename T>
std::vector<Kept> nms_impl(const T* boxes, const T* scores, const Groups& groups, double iou_threshold, double offset) {
  std::vector<Kept> kept(groups.count());
  at::parallel_for(0, groups.count(), 1, [&](int64_t begin, int64_t end) {
    Category<T> cat;
    for (int64_t g = begin; g < end; ++g) {
      kept[g] = nms_category(boxes, scores, groups, g, threshold_for_greater<T>(iou_threshold), static_cast<T>(offset),
                             cat);
    }
  });
  return kept;
}

}  // namespace

std::vector<Kept> soft_nms_kernel(
    const at::Tensor& boxes, const at::Tensor& scores, const Groups& groups, const SoftParams& params) {
  std::vector<Kept> kept;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "soft_nms_cpu", [&] {
    kept = soft_nms_impl(boxes.const_data_ptr<scalar_t>(), scores.const_data_ptr<scalar_t>(), groups,
                         soft_params_as<scalar_t>(params));
  });
  return kept;
}

std::vector<Kept> nms_kernel(
    const at::Tensor& boxes, const at::Tensor& scores, const Groups& groups, double iou_threshold, double offset) {
  std::vector<Kept> kept;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_cpu", [&] {
    kept = nms_impl(boxes.const_data_ptr<scalar_t>(), scores.const_data_ptr<scalar_t>(), groups, iou_threshold,
                    offset);
  });
  return kept;
}

}  // namespace msrcnn::nms::CPU_CAPABILITY
