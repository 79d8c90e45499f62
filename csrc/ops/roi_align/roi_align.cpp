// Schemas of the RoIAlign ops. The single-level ops take torchvision's arguments; the
// multi-level ops pool each RoI from the FPN level torchvision's MultiScaleRoIAlign would
// choose, in one kernel over all levels.

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(msrcnn, m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, "
      "bool aligned, bool channels_last) -> Tensor");
  m.def(
      "multi_level_roi_align(Tensor[] features, Tensor rois, float[] spatial_scales, SymInt pooled_height, "
      "SymInt pooled_width, int sampling_ratio, bool aligned, int canonical_scale, int canonical_level) -> Tensor");
  m.def(
      "_multi_level_roi_align_backward(Tensor grad, Tensor rois, float[] spatial_scales, SymInt pooled_height, "
      "SymInt pooled_width, int sampling_ratio, bool aligned, int canonical_scale, int canonical_level, "
      "SymInt batch_size, SymInt channels, SymInt[] heights, SymInt[] widths, bool channels_last) -> Tensor[]");
}

// The element bodies the CUDA kernels run (roi_align_math.h), run one element at a time on
// the CPU: tests check the GPU's per-element code and index arithmetic against torchvision.
TORCH_LIBRARY_FRAGMENT(msrcnn_testing, m) {
  m.def(
      "multi_level_roi_align_by_element(Tensor[] features, Tensor rois, float[] spatial_scales, "
      "int pooled_height, int pooled_width, int sampling_ratio, bool aligned, int canonical_scale, "
      "int canonical_level) -> Tensor");
  m.def(
      "multi_level_roi_align_backward_by_element(Tensor grad, Tensor rois, float[] spatial_scales, "
      "int pooled_height, int pooled_width, int sampling_ratio, bool aligned, int canonical_scale, "
      "int canonical_level, int batch_size, int channels, int[] heights, int[] widths, bool channels_last) "
      "-> Tensor[]");
}
