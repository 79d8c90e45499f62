"""Fast ops for Mask Scoring R-CNN, drop-in where torchvision has an equivalent."""

from msrcnn_fast.ops.multi_scale_roi_align import MultiScaleRoIAlign, multi_level_roi_align
from msrcnn_fast.ops.nms import batched_nms, batched_soft_nms, nms, soft_nms
from msrcnn_fast.ops.roi_align import RoIAlign, roi_align

__all__ = [
    "MultiScaleRoIAlign",
    "RoIAlign",
    "batched_nms",
    "batched_soft_nms",
    "multi_level_roi_align",
    "nms",
    "roi_align",
    "soft_nms",
]
