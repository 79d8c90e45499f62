#pragma once

// NMS and Soft-NMS per-element math: the ONLY copy, used by the CPU kernels, the CUDA kernels
// and the CPU element-by-element test build.
//
// Boxes are (x1, y1, x2, y2). `offset` is 0 (areas without the legacy "+1", the default) or 1.
// Soft-NMS (Bodla et al., 2017) weights a remaining box by its IoU with the selected one:
// linear 1 - iou if iou >= Nt else 1; gaussian exp(-iou^2 / sigma); hard 0 if iou >= Nt else 1.
// Hard NMS (torchvision's nms) suppresses a box when iou > Nt.

#include "common/macros.h"

#include <math.h>
#include <stdint.h>

namespace msrcnn::nms {

enum class SoftMethod : int { kHard = 0, kLinear = 1, kGaussian = 2 };

// Boxes per CUDA mask word (one bit each) in hard NMS.
constexpr int kBoxesPerWord = 64;

// Soft-NMS parameters in the compute type; thresholds rounded so that comparing a T value
// with them equals comparing it, widened, with the double the user gave (soft_params_as).
template <typename T>
struct SoftParamsOf {
  SoftMethod method;
  T iou_threshold;
  T sigma;
  T score_threshold;
  T offset;
};

template <typename T>
HOST_DEVICE_INLINE T box_area(T x1, T y1, T x2, T y2, T offset) {
  return (x2 - x1 + offset) * (y2 - y1 + offset);
}

// IoU of two boxes given their areas; 0 when the union is empty (two zero-area boxes).
template <typename T>
HOST_DEVICE_INLINE T box_iou(const T* a, T area_a, const T* b, T area_b, T offset) {
  const T left = a[0] > b[0] ? a[0] : b[0];
  const T top = a[1] > b[1] ? a[1] : b[1];
  const T right = a[2] < b[2] ? a[2] : b[2];
  const T bottom = a[3] < b[3] ? a[3] : b[3];
  T w = right - left + offset;
  T h = bottom - top + offset;
  w = w > static_cast<T>(0) ? w : static_cast<T>(0);
  h = h > static_cast<T>(0) ? h : static_cast<T>(0);
  const T inter = w * h;
  const T uni = area_a + area_b - inter;
  return uni > static_cast<T>(0) ? inter / uni : static_cast<T>(0);
}

HOST_DEVICE_INLINE float math_exp(float x) { return expf(x); }
HOST_DEVICE_INLINE double math_exp(double x) { return exp(x); }

template <typename T>
HOST_DEVICE_INLINE T soft_weight(T iou, const SoftParamsOf<T>& p) {
  switch (p.method) {
    case SoftMethod::kLinear:
      return iou >= p.iou_threshold ? static_cast<T>(1) - iou : static_cast<T>(1);
    case SoftMethod::kGaussian:
      return math_exp(-(iou * iou) / p.sigma);
    default:
      return iou >= p.iou_threshold ? static_cast<T>(0) : static_cast<T>(1);
  }
}

// A remaining box is dropped once its score falls below the threshold (NaN never survives).
template <typename T>
HOST_DEVICE_INLINE bool soft_survives(T score, T score_threshold) {
  return score >= score_threshold;
}

// Selection order: the higher score, and of equal scores the lower position (positions of a
// category are kept in input order, so this is the lower input index).
template <typename T>
HOST_DEVICE_INLINE bool soft_better(T score, int64_t pos, T best_score, int64_t best_pos) {
  return score > best_score || (score == best_score && pos < best_pos);
}

// Soft-NMS element body: box `i` of a category (structure of arrays) after box `selected`
// was taken. Returns its new score, or -inf once dropped (dead boxes stay dead).
template <typename T>
HOST_DEVICE_INLINE T soft_decay_element(
    int64_t i,
    const T* box_xyxy,  // [n, 4] of the category, in position order
    const T* areas,
    const T* scores,  // current scores, -inf for dead boxes
    int64_t selected,
    const SoftParamsOf<T>& p) {
  const T dead = -INFINITY;
  if (!(scores[i] > dead) || i == selected) {
    return dead;
  }
  const T iou = box_iou(box_xyxy + selected * 4, areas[selected], box_xyxy + i * 4, areas[i], p.offset);
  const T score = scores[i] * soft_weight(iou, p);
  return soft_survives(score, p.score_threshold) ? score : dead;
}

// Hard NMS element body: the suppression bits of box `row` over the boxes of column word
// `word` (boxes sorted by decreasing score within their category, `count` of them): bit b is
// set when box word * 64 + b comes after `row` and overlaps it by more than the threshold.
template <typename T>
HOST_DEVICE_INLINE uint64_t nms_mask_word(
    int64_t row, int64_t word, const T* box_xyxy, const T* areas, int64_t count, T iou_threshold, T offset) {
  uint64_t bits = 0;
  const int64_t first = word * kBoxesPerWord;
  for (int b = 0; b < kBoxesPerWord; ++b) {
    const int64_t j = first + b;
    if (j > row && j < count &&
        box_iou(box_xyxy + row * 4, areas[row], box_xyxy + j * 4, areas[j], offset) > iou_threshold) {
      bits |= static_cast<uint64_t>(1) << b;
    }
  }
  return bits;
}

}  // namespace msrcnn::nms
