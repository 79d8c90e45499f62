// Schemas of conv3x3: relu?(conv2d(input, weight, bias, stride, padding=1)) for a 3x3 weight,
// stride 1 or 2, and of its two backward ops (the gradient of the convolution, before the ReLU:
// the autograd formula in msrcnn_fast/ops/conv3x3.py applies the ReLU mask first).
//
// Kernels, picked by the dispatcher per device:
//   CPU   cpu/conv3x3_cpu.cpp: Winograd F(2x2, 3x3) at stride 1 (float32; float16 and bfloat16
//         computed in float32), ATen's convolution at stride 2 and in float64.
//   CUDA  the Triton kernels of kernels/conv3x3.py, registered from msrcnn_fast/ops/conv3x3.py
//         (ATen's convolution for float64).
// Outputs and input gradients are channels-last; weight gradients contiguous.

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def("conv3x3(Tensor input, Tensor weight, Tensor? bias, int stride, bool relu) -> Tensor");
  m.def("_conv3x3_backward_input(Tensor grad, Tensor weight, int stride, int height, int width) -> Tensor");
  m.def("_conv3x3_backward_weight(Tensor grad, Tensor input, int stride) -> (Tensor, Tensor)");
}
