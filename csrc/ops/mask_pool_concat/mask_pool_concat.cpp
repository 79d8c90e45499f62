// Schemas of mask_pool_concat, the MaskIoU head's input (MS R-CNN): one class's mask logits
// per RoI, sigmoid, max-pooled to the RoI features' size and concatenated with (or
// multiplied into) them, in one kernel. mode: "concat" (the paper's default), "multiply",
// "concat_all" (every class's mask; labels unused). labels may be None when mask_logits
// holds one class (already selected) or in "concat_all".

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def("mask_pool_concat(Tensor roi_features, Tensor mask_logits, Tensor? labels, str mode) -> Tensor");
  // Gradient with respect to mask_logits; roi_features is read in mode "multiply" only.
  m.def(
      "_mask_pool_concat_backward(Tensor grad, Tensor mask_logits, Tensor? labels, Tensor? roi_features, "
      "str mode) -> Tensor");
  // Gradient with respect to roi_features in mode "multiply" (the concat modes' is a slice of grad).
  m.def("_mask_pool_multiply_features_backward(Tensor grad, Tensor mask_logits, Tensor? labels) -> Tensor");
}

// The element bodies the CUDA kernels run (mask_pool_concat_math.h), one element at a time on the CPU.
TORCH_LIBRARY_FRAGMENT(msrcnn_testing, m) {
  m.def("mask_pool_concat_by_element(Tensor roi_features, Tensor mask_logits, Tensor? labels, str mode) -> Tensor");
  m.def(
      "mask_pool_concat_backward_by_element(Tensor grad, Tensor mask_logits, Tensor? labels, Tensor? roi_features, "
      "str mode) -> Tensor");
  m.def("mask_pool_multiply_features_backward_by_element(Tensor grad, Tensor mask_logits, Tensor? labels) -> Tensor");
}
