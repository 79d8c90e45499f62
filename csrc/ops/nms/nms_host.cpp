#include "ops/nms/nms_host.h"

#include <ATen/ops/isfinite.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/checks.h"

namespace msrcnn::nms {

void check_inputs(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                  double iou_threshold, double offset, const char* op) {
  TORCH_CHECK_VALUE(
      boxes.dim() == 2 && boxes.size(1) == 4, op, ": expected boxes of shape [N, 4] (x1, y1, x2, y2), got shape ",
      boxes.sizes());
  TORCH_CHECK_VALUE(scores.dim() == 1, op, ": expected scores of shape [N], got shape ", scores.sizes());
  TORCH_CHECK_VALUE(
      scores.size(0) == boxes.size(0), op, ": expected one score per box, got ", boxes.size(0), " boxes and ",
      scores.size(0), " scores");
  check_floating(boxes, op, "boxes");
  check_floating(scores, op, "scores");
  check_same_device(boxes, "boxes", scores, "scores", op);
  if (idxs.has_value()) {
    TORCH_CHECK_VALUE(idxs->dim() == 1, op, ": expected idxs of shape [N], got shape ", idxs->sizes());
    TORCH_CHECK_VALUE(
        idxs->size(0) == boxes.size(0), op, ": expected one category index per box, got ", boxes.size(0),
        " boxes and ", idxs->size(0), " idxs");
    TORCH_CHECK_TYPE(
        at::isIntegralType(idxs->scalar_type(), /*includeBool=*/false), op,
        ": expected idxs of an integer dtype, got ", idxs->scalar_type());
    check_same_device(boxes, "boxes", *idxs, "idxs", op);
  }
  TORCH_CHECK_VALUE(std::isfinite(iou_threshold), op, ": expected a finite iou_threshold, got ", iou_threshold);
  TORCH_CHECK_VALUE(offset == 0.0 || offset == 1.0, op, ": expected offset 0 or 1, got ", offset);
  if (boxes.numel() > 0) {
    TORCH_CHECK_VALUE(
        at::isfinite(boxes).all().item<bool>(), op, ": boxes contain NaN or infinite coordinates");
    TORCH_CHECK_VALUE(at::isfinite(scores).all().item<bool>(), op, ": scores contain NaN or infinite values");
  }
}

SoftParams make_soft_params(double iou_threshold, double sigma, double score_threshold, const std::string& method,
                            double offset, const char* op) {
  SoftParams params{SoftMethod::kGaussian, iou_threshold, sigma, score_threshold, offset};
  if (method == "gaussian") {
    params.method = SoftMethod::kGaussian;
  } else if (method == "linear") {
    params.method = SoftMethod::kLinear;
  } else if (method == "hard") {
    params.method = SoftMethod::kHard;
  } else {
    TORCH_CHECK_VALUE(false, op, ": expected method 'gaussian', 'linear' or 'hard', got '", method, "'");
  }
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, op, ": expected sigma > 0, got ", sigma);
  TORCH_CHECK_VALUE(
      std::isfinite(score_threshold), op, ": expected a finite score_threshold, got ", score_threshold);
  return params;
}

at::ScalarType accumulate_type(const at::Tensor& boxes, const at::Tensor& scores) {
  return boxes.scalar_type() == at::kDouble || scores.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

Groups group_by_category(const int64_t* idxs, int64_t n) {
  Groups groups;
  groups.order.resize(n);
  std::iota(groups.order.begin(), groups.order.end(), 0);
  if (n == 0) {
    groups.begin = {0};
    return groups;
  }
  if (idxs == nullptr) {
    groups.begin = {0, n};
    return groups;
  }
  std::stable_sort(groups.order.begin(), groups.order.end(), [&](int64_t a, int64_t b) { return idxs[a] < idxs[b]; });
  groups.begin.push_back(0);
  for (int64_t i = 1; i < n; ++i) {
    if (idxs[groups.order[i]] != idxs[groups.order[i - 1]]) {
      groups.begin.push_back(i);
    }
  }
  groups.begin.push_back(n);
  return groups;
}

void sort_by_score(std::vector<double>& scores, std::vector<int64_t>& indices) {
  std::vector<int64_t> perm(indices.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && indices[a] < indices[b]);
  });
  std::vector<double> sorted_scores(perm.size());
  std::vector<int64_t> sorted_indices(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    sorted_scores[i] = scores[perm[i]];
    sorted_indices[i] = indices[perm[i]];
  }
  scores.swap(sorted_scores);
  indices.swap(sorted_indices);
}

}  // namespace msrcnn::nms
