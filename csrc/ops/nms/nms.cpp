// Schemas of the NMS ops: hard NMS (torchvision's nms and batched_nms) and Soft-NMS
// (Bodla et al., 2017), single- and multi-category. Output lengths depend on the data.

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold, float offset) -> Tensor");
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, float offset) -> Tensor");
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, float iou_threshold, float sigma, float score_threshold, str method, "
      "float offset) -> (Tensor, Tensor)");
  m.def(
      "batched_soft_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, float sigma, "
      "float score_threshold, str method, float offset) -> (Tensor, Tensor)");
}

// The algorithms the CUDA kernels run (mask words and reduction for hard NMS; alive scores,
// decay and arg-max for Soft-NMS), over the same element bodies, run on the CPU for tests.
TORCH_LIBRARY_FRAGMENT(msrcnn_testing, m) {
  m.def("batched_nms_by_element(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, float offset) -> Tensor");
  m.def(
      "batched_soft_nms_by_element(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, float sigma, "
      "float score_threshold, str method, float offset) -> (Tensor, Tensor)");
}
