#pragma once

// Host-side pieces shared by the NMS ops' CPU and CUDA entry points: argument checks, the
// Soft-NMS parameters, and the grouping of boxes by category.

#include <ATen/core/Tensor.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ops/nms/nms_math.h"

namespace msrcnn::nms {

struct SoftParams {
  SoftMethod method;
  double iou_threshold;
  double sigma;
  double score_threshold;
  double offset;
};

// Raises a clear error unless boxes is [N, 4], scores [N] and idxs (when given) [N] of an
// integer type, all floating/finite where it matters and on one device.
void check_inputs(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                  double iou_threshold, double offset, const char* op);

SoftParams make_soft_params(double iou_threshold, double sigma, double score_threshold, const std::string& method,
                            double offset, const char* op);

// The largest T t' with (x > t') == (double(x) > t) for every T x: torchvision compares its
// float IoU with the double threshold, so must we.
template <typename T>
T threshold_for_greater(double t) {
  T rounded = static_cast<T>(t);
  if (static_cast<double>(rounded) > t) {
    rounded = std::nextafter(rounded, -std::numeric_limits<T>::infinity());
  }
  return rounded;
}

// The smallest T t' with (x >= t') == (double(x) >= t) for every T x.
template <typename T>
T threshold_for_at_least(double t) {
  T rounded = static_cast<T>(t);
  if (static_cast<double>(rounded) < t) {
    rounded = std::nextafter(rounded, std::numeric_limits<T>::infinity());
  }
  return rounded;
}

template <typename T>
SoftParamsOf<T> soft_params_as(const SoftParams& p) {
  return SoftParamsOf<T>{p.method, threshold_for_at_least<T>(p.iou_threshold), static_cast<T>(p.sigma),
                         threshold_for_at_least<T>(p.score_threshold), static_cast<T>(p.offset)};
}

// Coordinates and scores are computed in double for double boxes, float otherwise.
at::ScalarType accumulate_type(const at::Tensor& boxes, const at::Tensor& scores);

// Boxes grouped by category: group g is order[begin[g] .. begin[g + 1]), in input order.
struct Groups {
  std::vector<int64_t> order;
  std::vector<int64_t> begin;
  int64_t count() const { return static_cast<int64_t>(begin.size()) - 1; }
};

// idxs: int64 [N] on the CPU, or nullptr for a single category.
Groups group_by_category(const int64_t* idxs, int64_t n);

// Sorts (score, index) pairs by decreasing score, equal scores by increasing index.
void sort_by_score(std::vector<double>& scores, std::vector<int64_t>& indices);

}  // namespace msrcnn::nms
