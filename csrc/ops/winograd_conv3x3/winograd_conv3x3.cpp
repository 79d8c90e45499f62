// Schema of winograd_conv3x3: relu?(conv2d(input, weight, bias, stride=1, padding=1)) for a
// 3x3 weight, by Winograd F(2x2, 3x3) on the CPU (float32; see cpu/winograd_conv3x3_cpu.cpp for
// the other dtypes) and by ATen's convolution (cuDNN) on CUDA. The output is channels-last.

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def("winograd_conv3x3(Tensor input, Tensor weight, Tensor? bias, bool relu) -> Tensor");
}
