"""Mask Scoring R-CNN model modules."""

from msrcnn_fast.model.mask_head import MaskHead
from msrcnn_fast.model.maskiou_head import MaskIoUHead

__all__ = ["MaskHead", "MaskIoUHead"]
