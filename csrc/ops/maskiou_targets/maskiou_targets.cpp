// Schema of maskiou_targets: the MaskIoU head's training targets (MS R-CNN, docs/semantics.md
// "MaskIoU target") and the mask head's mask targets, for a batch of images in one call.
// Per image: gt_masks [G, H, W] bool/uint8, proposals [N, 4], matched_idxs [N] int64; the
// images' target-class mask_logits concatenated [sum N, M, M]. Returns mask_targets
// [sum N, M, M] and maskiou [sum N], of the proposals' dtype. No gradient (targets).

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def(
      "maskiou_targets(Tensor[] gt_masks, Tensor[] proposals, Tensor[] matched_idxs, Tensor mask_logits, "
      "bool aligned, bool binary_mask_targets) -> (Tensor, Tensor)");
}

// The element bodies the CUDA kernels run (maskiou_targets_math.h), one element at a time on the CPU.
TORCH_LIBRARY_FRAGMENT(msrcnn_testing, m) {
  m.def(
      "maskiou_targets_by_element(Tensor[] gt_masks, Tensor[] proposals, Tensor[] matched_idxs, "
      "Tensor mask_logits, bool aligned, bool binary_mask_targets) -> (Tensor, Tensor)");
}
