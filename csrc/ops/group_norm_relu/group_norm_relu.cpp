// Schemas of group_norm_relu: GroupNorm (Wu & He 2018) with an optional ReLU after it, in one
// pass over the output; mean and rstd ([N, groups]) are returned for the backward.

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def(
      "group_norm_relu(Tensor input, int num_groups, Tensor? weight, Tensor? bias, float eps, bool relu) -> "
      "(Tensor, Tensor, Tensor)");
  // output is read for the ReLU's mask only (where relu).
  m.def(
      "_group_norm_relu_backward(Tensor grad, Tensor input, Tensor output, Tensor mean, Tensor rstd, Tensor? weight, "
      "int num_groups, bool relu) -> (Tensor, Tensor, Tensor)");
}
