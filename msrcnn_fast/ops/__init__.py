"""Fast ops for Mask Scoring R-CNN, drop-in where torchvision has an equivalent."""

from msrcnn_fast.ops import quantized  # noqa: F401 - registers the drop-ins' quantized CPU kernels
from msrcnn_fast.ops.conv3x3 import Conv3x3, conv3x3
from msrcnn_fast.ops.errors import ArgumentTypeError, ArgumentValueError, BoxesTypeError, BoxesValueError
from msrcnn_fast.ops.group_norm_relu import GroupNormReLU, group_norm_relu
from msrcnn_fast.ops.mask_class_logits import mask_class_logits
from msrcnn_fast.ops.mask_pool_concat import MaskPoolConcat, mask_pool_concat
from msrcnn_fast.ops.maskiou_targets import maskiou_targets, maskiou_targets_batched
from msrcnn_fast.ops.multi_scale_roi_align import MultiScaleRoIAlign, multi_level_roi_align
from msrcnn_fast.ops.nms import batched_nms, batched_soft_nms, nms, soft_nms
from msrcnn_fast.ops.paste_masks import paste_masks
from msrcnn_fast.ops.roi_align import RoIAlign, roi_align

__all__ = [
    "ArgumentTypeError",
    "ArgumentValueError",
    "BoxesTypeError",
    "BoxesValueError",
    "Conv3x3",
    "GroupNormReLU",
    "MaskPoolConcat",
    "MultiScaleRoIAlign",
    "RoIAlign",
    "batched_nms",
    "batched_soft_nms",
    "conv3x3",
    "group_norm_relu",
    "mask_class_logits",
    "mask_pool_concat",
    "maskiou_targets",
    "maskiou_targets_batched",
    "multi_level_roi_align",
    "nms",
    "paste_masks",
    "roi_align",
    "soft_nms",
]
