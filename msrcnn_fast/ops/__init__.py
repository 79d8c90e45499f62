"""Fast ops for Mask Scoring R-CNN, drop-in where torchvision has an equivalent."""

from msrcnn_fast.ops.multi_scale_roi_align import MultiScaleRoIAlign, multi_level_roi_align
from msrcnn_fast.ops.roi_align import RoIAlign, roi_align

__all__ = ["MultiScaleRoIAlign", "RoIAlign", "multi_level_roi_align", "roi_align"]
from msrcnn_fast.ops.conv3x3 import Conv3x3ReLU, conv3x3_bias_relu  # noqa: E402  (registers msrcnn::conv3x3_*)

__all__ += ["Conv3x3ReLU", "conv3x3_bias_relu"]
