"""Masks pasted into the image (Mask R-CNN inference) and thresholded in one kernel.

``torchvision.models.detection.roi_heads.paste_masks_in_image`` resizes every mask with its
own F.interpolate call, pastes it into a zero float image of its own, stacks those and then
thresholds them. Here one kernel (``torch.ops.msrcnn.paste_masks``, csrc/ops/paste_masks)
computes each output pixel of [N, H, W] directly, bool, with no per-mask Python loop and no
intermediate images. The result equals ``paste_masks_in_image(masks, boxes, (H, W),
padding)[:, 0] > threshold`` (its box expansion by the padding and integer truncation
included; see paste_masks_math.h), up to values within a few float ulps of the threshold.
"""

import torch
from torch import Tensor

__all__ = ["paste_masks"]


def paste_masks(
    masks: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int] | list[int],
    threshold: float = 0.5,
    padding: int = 1,
) -> Tensor:
    """Pastes mask probabilities into their boxes of an image and thresholds them.

    Args:
        masks: Tensor[N, 1, M, M] (or [N, M, M]) probabilities, any floating dtype.
        boxes: Tensor[N, 4] (x1, y1, x2, y2) float32/float64, in the image's coordinates.
        image_size: (H, W) of the image.
        threshold: a pixel is foreground where the pasted probability > threshold (torchvision's
            evaluation and maskrcnn-benchmark's Masker use > 0.5). Rounded to the masks' dtype.
        padding: zero padding added around each mask before resizing (torchvision: 1).

    Returns:
        Tensor[N, H, W] bool. Boxes wholly outside the image (where torchvision raises) paste
        nothing.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    height, width = image_size
    return torch.ops.msrcnn.paste_masks(masks, boxes, height, width, float(threshold), padding)


@torch.library.register_fake("msrcnn::paste_masks")
def _paste_masks_fake(masks, boxes, height, width, threshold, padding):
    torch._check(masks.dim() == 4, lambda: f"msrcnn::paste_masks: expected masks [N, 1, M, M], got {masks.shape}")
    return masks.new_empty((masks.size(0), height, width), dtype=torch.bool)
