"""Masks pasted into the image (Mask R-CNN inference) and thresholded in one kernel.

``torchvision.models.detection.roi_heads.paste_masks_in_image`` resizes every mask with its
own F.interpolate call, pastes it into a zero float image of its own, stacks those and then
thresholds them. Here one kernel (``torch.ops.msrcnn.paste_masks``, csrc/ops/paste_masks)
computes each output pixel of [N, H, W] directly, bool, with no per-mask Python loop and no
intermediate images. The result equals ``paste_masks_in_image(masks, boxes, (H, W),
padding)[:, 0] > threshold`` (its box expansion by the padding and integer truncation
included; see paste_masks_math.h), up to values within a few float ulps of the threshold.
"""

import operator

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
        Tensor[N, H, W] bool. Boxes wholly outside the image (where torchvision raises) and
        boxes with a NaN coordinate paste nothing; coordinates are clamped to +-2^40 first (an
        infinite box pastes as that). Where nothing is pasted the probability is 0, so such
        pixels are foreground only for a negative threshold (as in the composition above).
        NaN probabilities are never above the threshold. An image_size with a zero gives an
        empty output. Float32 and half masks resize in float32, as ATen does: for a resized
        mask wider than 2^23 pixels (a huge box or padding) its source indices are coarse.

    Raises:
        ValueError: masks not [N, 1, M, M] (M > 0), boxes not [N, 4], image_size not two
            non-negative ints (or an output of 2^63 elements or more), padding outside
            [0, 2^40], a NaN threshold, tensors on different devices.
        TypeError: masks not floating, boxes not float32/float64, image_size not integers.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    height, width = _image_size(image_size)
    return torch.ops.msrcnn.paste_masks(masks, boxes, height, width, float(threshold), padding)


def _image_size(image_size) -> tuple[int, int]:
    try:
        size = tuple(image_size)
    except TypeError:
        raise TypeError(f"image_size: expected (height, width), got {image_size!r}") from None
    if len(size) != 2:
        raise ValueError(f"image_size: expected (height, width), got {size}")
    try:  # ints, NumPy ints, 0-d integer tensors; SymInts (torch.compile) as they are
        return tuple(v if isinstance(v, torch.SymInt) else operator.index(v) for v in size)
    except TypeError:
        raise TypeError(f"image_size: expected integer (height, width), got {size}") from None


@torch.library.register_fake("msrcnn::paste_masks")
def _paste_masks_fake(masks, boxes, height, width, threshold, padding):
    # The C++ checks that need no values (csrc/ops/paste_masks), with the same error types:
    # the meta kernel runs where any argument is a meta tensor, also beside CPU ones.
    op = "msrcnn::paste_masks"
    torch._check_value(
        boxes.device == masks.device,
        lambda: f"{op}: expected masks and boxes on the same device, got {masks.device} and {boxes.device}",
    )
    torch._check_value(
        masks.dim() == 4 and masks.size(1) == 1 and masks.size(2) == masks.size(3) and masks.size(2) > 0,
        lambda: f"{op}: expected masks of shape [N, 1, M, M], got shape {tuple(masks.shape)}",
    )
    torch._check_value(
        boxes.dim() == 2 and boxes.size(1) == 4 and boxes.size(0) == masks.size(0),
        lambda: f"{op}: expected boxes of shape [{masks.size(0)}, 4], one per mask, got shape {tuple(boxes.shape)}",
    )
    torch._check_value(
        height >= 0 and width >= 0, lambda: f"{op}: expected a non-negative image_size, got ({height}, {width})"
    )
    return masks.new_empty((masks.size(0), height, width), dtype=torch.bool)
