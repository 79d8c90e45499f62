"""Fast ops for Mask Scoring R-CNN, drop-in where torchvision has an equivalent."""

from msrcnn_fast.ops.multi_scale_roi_align import MultiScaleRoIAlign, multi_level_roi_align
from msrcnn_fast.ops.roi_align import RoIAlign, roi_align

__all__ = ["MultiScaleRoIAlign", "RoIAlign", "multi_level_roi_align", "roi_align"]
