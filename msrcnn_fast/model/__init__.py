"""Mask Scoring R-CNN: factories, the model and its modules."""

from msrcnn_fast.model.factories import (
    mask_scoring_rcnn,
    msrcnn_resnet18_fpn,
    msrcnn_resnet50_fpn,
    msrcnn_resnet101_dcn_fpn,
    msrcnn_resnet101_fpn,
    msrcnn_resnet_fpn,
)
from msrcnn_fast.model.mask_head import MaskHead
from msrcnn_fast.model.maskiou_head import MaskIoUHead
from msrcnn_fast.model.rcnn import MaskScoringRCNN
from msrcnn_fast.model.roi_heads import MaskScoringRoIHeads

__all__ = [
    "MaskHead",
    "MaskIoUHead",
    "MaskScoringRCNN",
    "MaskScoringRoIHeads",
    "mask_scoring_rcnn",
    "msrcnn_resnet18_fpn",
    "msrcnn_resnet50_fpn",
    "msrcnn_resnet101_dcn_fpn",
    "msrcnn_resnet101_fpn",
    "msrcnn_resnet_fpn",
]
