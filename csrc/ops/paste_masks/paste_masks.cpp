// Schema of paste_masks: N masks [N, 1, M, M] of probabilities pasted into their boxes of an
// H x W image and thresholded, as torchvision's paste_masks_in_image(masks, boxes, (H, W),
// padding) > threshold, in one kernel: [N, H, W] bool.

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def("paste_masks(Tensor masks, Tensor boxes, SymInt height, SymInt width, float threshold, int padding) -> Tensor");
}

// The element body the CUDA kernel runs (paste_masks_math.h), one pixel at a time on the CPU.
TORCH_LIBRARY_FRAGMENT(msrcnn_testing, m) {
  m.def(
      "paste_masks_by_element(Tensor masks, Tensor boxes, int height, int width, float threshold, int padding) "
      "-> Tensor");
}
