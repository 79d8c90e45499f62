"""MaskIoU targets (Mask Scoring R-CNN) and mask targets in one kernel, no per-RoI Python loop.

Kernel: ``torch.ops.msrcnn.maskiou_targets`` (csrc/ops/maskiou_targets). Conventions (see
maskiou_targets_math.h, docs/semantics.md "MaskIoU target"):

* mask targets: torchvision's ``project_masks_on_boxes``, i.e. ``roi_align(gt_masks[:, None].float(),
  rois, (M, M), 1.0)`` with sampling_ratio -1 (adaptive) and aligned=False (detectron2's aligned=True
  on request): a float target in [0, 1]. ``binary_mask_targets=True`` stores them thresholded at
  0.5 (binary targets, as the MS R-CNN authors' polygon-rasterised ones are).
* for the IoU, the target is binarised at >= 0.5 and the prediction at logit > 0.
* area ratio: ground-truth pixels inside the proposal / all its pixels, at image resolution; a
  pixel is inside when its centre (c + 0.5, r + 0.5) lies in [x1, x2) x [y1, y2). Summed-area
  tables make it O(1) per box.
* maskiou = max(overlap, 0) / max(pred + target / max(ratio, 1e-10) - overlap, 1).
"""

import operator

import torch
from torch import Tensor

__all__ = ["maskiou_targets", "maskiou_targets_batched"]


def maskiou_targets(
    gt_masks: Tensor,
    proposals: Tensor,
    matched_idxs: Tensor,
    mask_logits: Tensor,
    resolution: int = 28,
    *,
    aligned: bool = False,
    binary_mask_targets: bool = False,
) -> tuple[Tensor, Tensor]:
    """Mask targets and MaskIoU targets of one image's positive RoIs.

    Args:
        gt_masks: Tensor[G, H, W] bool or uint8 (non-zero = foreground), at input-image resolution.
        proposals: Tensor[N, 4] (x1, y1, x2, y2) float32/float64, image coordinates.
        matched_idxs: Tensor[N] int64, the ground truth (0 <= i < G) each proposal is matched to.
        mask_logits: Tensor[N, M, M] (or [N, 1, M, M]) mask logits of each RoI's target class;
            any floating dtype.
        resolution: M (28 in Mask R-CNN); must match mask_logits.
        aligned: roi_align's half-pixel offset for the mask targets (torchvision: False).
        binary_mask_targets: return the mask targets thresholded at 0.5 (as 0. / 1.).

    Returns:
        (mask_targets Tensor[N, M, M], maskiou Tensor[N]), of the proposals' dtype, no gradient.
        A proposal with a NaN or infinite coordinate gets a zero mask target and maskiou 0
        (as roi_align pools it to zeros); a huge one, the average of its samples that land on
        the image (bounded work: only those are visited). A NaN logit is background (the
        prediction is logit > 0). An image without pixels (H or W = 0) gives zero targets.

    Raises:
        ValueError: a matched index outside [0, G) (naming matched_idxs[i][n]), proposals but
            no ground-truth masks, shapes other than those above, resolution not positive or
            not mask_logits' size, tensors on different devices.
        TypeError: gt_masks not bool/uint8, proposals not float32/float64, matched_idxs not
            int64, mask_logits not floating, arguments that are not lists (batched form).
    """
    return maskiou_targets_batched(
        [gt_masks],
        [proposals],
        [matched_idxs],
        mask_logits,
        resolution,
        aligned=aligned,
        binary_mask_targets=binary_mask_targets,
    )


def maskiou_targets_batched(
    gt_masks: list[Tensor],
    proposals: list[Tensor],
    matched_idxs: list[Tensor],
    mask_logits: Tensor | list[Tensor],
    resolution: int = 28,
    *,
    aligned: bool = False,
    binary_mask_targets: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`maskiou_targets` for a list of images in one call.

    gt_masks, proposals and matched_idxs hold one tensor per image (images may differ in
    size); mask_logits is the images' Tensor[N_i, M, M] concatenated (as the mask head
    outputs them) or their list. Returns the images' results concatenated in order.
    """
    for name, value in (("gt_masks", gt_masks), ("proposals", proposals), ("matched_idxs", matched_idxs)):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name}: expected a list of tensors, one per image, got {type(value).__name__}")
    if len(gt_masks) == 0:
        raise ValueError("gt_masks: expected at least one image, got none")
    if not isinstance(resolution, torch.SymInt):
        try:
            resolution = operator.index(resolution)
        except TypeError:
            raise TypeError(f"resolution: expected an int (the mask size M), got {resolution!r}") from None
    if resolution <= 0:
        raise ValueError(f"resolution: expected a positive int (the mask size M), got {resolution}")
    if isinstance(mask_logits, (list, tuple)):
        # No logits at all (images without proposals): an empty [0, M, M].
        mask_logits = (
            torch.cat(list(mask_logits))
            if len(mask_logits) > 0
            else torch.zeros((0, resolution, resolution), dtype=torch.float32, device=gt_masks[0].device)
        )
    if mask_logits.dim() == 4 and mask_logits.size(1) == 1:
        mask_logits = mask_logits[:, 0]
    if mask_logits.dim() != 3 or mask_logits.shape[1:] != (resolution, resolution):
        raise ValueError(
            f"mask_logits: expected shape [N, {resolution}, {resolution}] (resolution {resolution}), "
            f"got {tuple(mask_logits.shape)}"
        )
    # Targets carry no gradient: the logits are only compared with 0.
    return torch.ops.msrcnn.maskiou_targets(
        list(gt_masks), list(proposals), list(matched_idxs), mask_logits.detach(), aligned, binary_mask_targets
    )


@torch.library.register_fake("msrcnn::maskiou_targets")
def _maskiou_targets_fake(gt_masks, proposals, matched_idxs, mask_logits, aligned, binary_mask_targets):
    # The C++ checks that need no values (csrc/ops/maskiou_targets), with the same error types:
    # the meta kernel runs where any argument is a meta tensor, also beside CPU ones.
    op = "msrcnn::maskiou_targets"
    torch._check_value(len(proposals) > 0, lambda: f"{op}: expected at least one image, got none")
    torch._check_value(
        len(gt_masks) == len(proposals) == len(matched_idxs),
        lambda: (
            f"{op}: expected one gt_masks, proposals and matched_idxs per image, got "
            f"{len(gt_masks)}, {len(proposals)} and {len(matched_idxs)}"
        ),
    )
    torch._check_value(
        mask_logits.dim() == 3,
        lambda: f"{op}: expected mask_logits [N, M, M], got {tuple(mask_logits.shape)}",
    )
    for i, tensors in enumerate(zip(gt_masks, proposals, matched_idxs)):
        for t, name in zip(tensors, ("gt_masks", "proposals", "matched_idxs")):
            torch._check_value(
                t.device == mask_logits.device,
                lambda t=t, name=name, i=i: (
                    f"{op}: expected mask_logits and {name} on the same device, got "
                    f"{mask_logits.device} and {t.device} ({name}[{i}])"
                ),
            )
    return (
        proposals[0].new_empty(mask_logits.shape),
        proposals[0].new_empty((mask_logits.size(0),)),
    )
