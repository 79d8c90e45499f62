"""Fast ops for Mask Scoring R-CNN, drop-in where torchvision has an equivalent."""

from msrcnn_fast.ops.multi_scale_roi_align import MultiScaleRoIAlign, multi_level_roi_align
from msrcnn_fast.ops.roi_align import RoIAlign, roi_align

__all__ = ["MultiScaleRoIAlign", "RoIAlign", "multi_level_roi_align", "roi_align"]

from msrcnn_fast.ops.mask_pool_concat import MaskPoolConcat, mask_pool_concat  # noqa: E402

__all__ += ["MaskPoolConcat", "mask_pool_concat"]

from msrcnn_fast.ops.maskiou_targets import maskiou_targets, maskiou_targets_batched  # noqa: E402

__all__ += ["maskiou_targets", "maskiou_targets_batched"]

from msrcnn_fast.ops.paste_masks import paste_masks  # noqa: E402

__all__ += ["paste_masks"]
