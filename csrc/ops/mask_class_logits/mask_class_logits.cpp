// Schema of mask_class_logits: the mask head's upsampling (ConvTranspose 2x2 stride 2 + ReLU)
// and its 1x1 predictor for one class per RoI, fused: [N, 1, 2H, 2W] logits from the
// [N, Cin, H, W] features, without the [N, Cout, 2H, 2W] upsampled features in memory.

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def(
      "mask_class_logits(Tensor features, Tensor deconv_weight, Tensor deconv_bias, Tensor class_weight, "
      "Tensor class_bias) -> Tensor");
}

// The element body the CUDA kernel runs (mask_class_logits_math.h), one logit at a time on the CPU.
TORCH_LIBRARY_FRAGMENT(msrcnn_testing, m) {
  m.def(
      "mask_class_logits_by_element(Tensor features, Tensor deconv_weight, Tensor deconv_bias, "
      "Tensor class_weight, Tensor class_bias) -> Tensor");
}
