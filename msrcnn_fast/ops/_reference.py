"""Plain-PyTorch references of the ops, written from docs/semantics.md and the papers.

Slow and simple on purpose: tests and benchmarks compare the kernels against these.
(RoIAlign is checked against torchvision itself.)
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# --- NMS and Soft-NMS ---------------------------------------------------------------------


def _iou(a: list[float], b: list[float], offset: float) -> float:
    area_a = (a[2] - a[0] + offset) * (a[3] - a[1] + offset)
    area_b = (b[2] - b[0] + offset) * (b[3] - b[1] + offset)
    w = max(min(a[2], b[2]) - max(a[0], b[0]) + offset, 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]) + offset, 0.0)
    inter = w * h
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def soft_nms_reference(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 1e-3,
    method: str = "gaussian",
    offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al., 2017), step by step, in float64 Python.

    Take the highest-scoring remaining box (equal scores: the lower index), decay every other
    remaining box by its IoU with it, drop every remaining box below score_threshold; repeat.
    """
    box_list = boxes.double().tolist()
    current = scores.double().tolist()
    remaining = [i for i in range(len(box_list)) if current[i] >= score_threshold]
    keep, kept_scores = [], []
    while remaining:
        best = max(remaining, key=lambda i: (current[i], -i))
        keep.append(best)
        kept_scores.append(current[best])
        remaining.remove(best)
        for i in remaining:
            iou = _iou(box_list[best], box_list[i], offset)
            if method == "gaussian":
                weight = math.exp(-(iou * iou) / sigma)
            elif method == "linear":
                weight = 1.0 - iou if iou >= iou_threshold else 1.0
            else:
                weight = 0.0 if iou >= iou_threshold else 1.0
            current[i] *= weight
        remaining = [i for i in remaining if current[i] >= score_threshold]
    return torch.tensor(keep, dtype=torch.int64), torch.tensor(kept_scores, dtype=torch.float64)


def batched_soft_nms_reference(boxes: Tensor, scores: Tensor, idxs: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
    """Soft-NMS of each category alone; all kept boxes by decreasing score (then index)."""
    keep, kept_scores = [], []
    for category in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == category).flatten()
        k, s = soft_nms_reference(boxes[members], scores[members], **kwargs)
        keep += members[k].tolist()
        kept_scores += s.tolist()
    order = sorted(range(len(keep)), key=lambda j: (-kept_scores[j], keep[j]))
    return (
        torch.tensor([keep[j] for j in order], dtype=torch.int64),
        torch.tensor([kept_scores[j] for j in order], dtype=torch.float64),
    )


# ---------------------------------------------------------------------------------------
# mask_pool_concat: the MaskIoU head's input (docs/semantics.md, "MaskIoU head input"; Table 4).


def mask_pool_concat(
    roi_features: Tensor, mask_logits: Tensor, labels: Tensor | None = None, mode: str = "concat"
) -> Tensor:
    """cat(roi_features, max_pool2d(sigmoid(mask_logits[arange(N), labels]), k, k)) and Table 4's variants."""
    n = roi_features.size(0)
    window = (mask_logits.size(2) // roi_features.size(2), mask_logits.size(3) // roi_features.size(3))
    if mode == "concat_all":
        return torch.cat([roi_features, F.max_pool2d(mask_logits.sigmoid(), window, window)], dim=1)
    if mask_logits.size(1) == 1:
        selected = mask_logits[:, 0]
    else:
        selected = mask_logits[torch.arange(n, device=mask_logits.device), labels]
    pooled = F.max_pool2d(selected[:, None].sigmoid(), window, window)
    if mode == "multiply":
        return roi_features * pooled
    return torch.cat([roi_features, pooled], dim=1)


# ---------------------------------------------------------------------------------------
# maskiou_targets: mask targets and MaskIoU targets (docs/semantics.md, "MaskIoU target").


def project_masks_on_boxes(
    gt_masks: Tensor, proposals: Tensor, matched_idxs: Tensor, resolution: int, aligned: bool = False
) -> Tensor:
    """torchvision's mask targets: the matched mask cropped to the box and resized (roi_align)."""
    import torchvision

    rois = torch.cat([matched_idxs[:, None].to(proposals), proposals], dim=1)
    masks = (gt_masks != 0)[:, None].to(proposals)
    return torchvision.ops.roi_align(masks, rois, (resolution, resolution), 1.0, -1, aligned)[:, 0]


def pixels_inside(lo: Tensor, hi: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Pixels [begin, end) whose centres (i + 0.5) lie in [lo, hi), clamped to [0, size]."""
    begin = torch.ceil(lo - 0.5).clamp(0, size)
    end = torch.maximum(torch.ceil(hi - 0.5).clamp(0, size), begin)
    return begin.long(), end.long()


def area_ratios(gt_masks: Tensor, proposals: Tensor, matched_idxs: Tensor) -> Tensor:
    """Ground-truth pixels inside each proposal / all its pixels, through summed-area tables."""
    height, width = gt_masks.shape[-2:]
    table = F.pad((gt_masks != 0).long().cumsum(1).cumsum(2), (1, 0, 1, 0))  # [G, H + 1, W + 1]
    x0, x1 = pixels_inside(proposals[:, 0], proposals[:, 2], width)
    y0, y1 = pixels_inside(proposals[:, 1], proposals[:, 3], height)
    t = table[matched_idxs]
    n = torch.arange(len(proposals), device=proposals.device)
    inside = t[n, y1, x1] - t[n, y0, x1] - t[n, y1, x0] + t[n, y0, x0]
    total = t[:, height, width]
    return torch.where(total > 0, inside.to(proposals) / total.clamp(min=1).to(proposals), 0.0)


def maskiou_from_targets(mask_targets: Tensor, mask_logits: Tensor, ratios: Tensor) -> Tensor:
    """The authors' compute_mask_iou_targets, on targets binarised at 0.5 (docs/semantics.md)."""
    pred = (mask_logits > 0).to(mask_targets)
    target = (mask_targets >= 0.5).to(mask_targets)
    full_area = target.sum(dim=(1, 2)) / ratios.clamp(min=1e-10)
    overlap = (pred * target).sum(dim=(1, 2))
    union = (pred.sum(dim=(1, 2)) + full_area - overlap).clamp(min=1)
    return overlap.clamp(min=0) / union


def maskiou_targets(
    gt_masks: Tensor,
    proposals: Tensor,
    matched_idxs: Tensor,
    mask_logits: Tensor,
    resolution: int = 28,
    aligned: bool = False,
    binary_mask_targets: bool = False,
) -> tuple[Tensor, Tensor]:
    """(mask_targets [N, M, M], maskiou [N]) of one image, vectorised."""
    mask_targets = project_masks_on_boxes(gt_masks, proposals, matched_idxs, resolution, aligned)
    maskiou = maskiou_from_targets(mask_targets, mask_logits, area_ratios(gt_masks, proposals, matched_idxs))
    if binary_mask_targets:
        mask_targets = (mask_targets >= 0.5).to(mask_targets)
    return mask_targets, maskiou


def maskiou_targets_per_instance(
    gt_masks: Tensor, proposals: Tensor, matched_idxs: Tensor, mask_logits: Tensor, resolution: int = 28
) -> tuple[Tensor, Tensor]:
    """The popular reimplementations' shape: torchvision's mask targets, then a Python loop over
    the RoIs cropping each one's ground truth to its box for the area ratio (mmdetection's
    MaskIoUHead._get_area_ratio, the authors' compute_proposal_gt_iou on bitmaps), then the
    authors' formula. Same conventions as :func:`maskiou_targets`."""
    import torchvision

    # torchvision's project_masks_on_boxes: the masks as floats, one roi_align over all RoIs.
    masks = (gt_masks if gt_masks.dtype == torch.bool else gt_masks != 0)[:, None].to(proposals)
    rois = torch.cat([matched_idxs[:, None].to(proposals), proposals], dim=1)
    mask_targets = torchvision.ops.roi_align(masks, rois, (resolution, resolution), 1.0)[:, 0]
    height, width = gt_masks.shape[-2:]
    full_areas = masks.sum(dim=(1, 2, 3)).tolist()
    ratios = []

    def inside(lo, hi, size):  # pixels_inside on Python floats (float32 boxes give the same)
        begin = min(max(math.ceil(lo - 0.5), 0), size)
        return begin, max(min(max(math.ceil(hi - 0.5), 0), size), begin)

    for (bx0, by0, bx1, by1), index in zip(proposals.tolist(), matched_idxs.tolist()):
        x0, x1 = inside(bx0, bx1, width)
        y0, y1 = inside(by0, by1, height)
        count = masks[index, 0, y0:y1, x0:x1].sum().item()
        ratios.append(count / full_areas[index] if full_areas[index] > 0 else 0.0)
    ratios = torch.tensor(ratios, dtype=proposals.dtype, device=proposals.device)
    return mask_targets, maskiou_from_targets(mask_targets, mask_logits, ratios)


# ---------------------------------------------------------------------------------------
# paste_masks: masks pasted into the image at inference, then thresholded.


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float = 0.5, padding: int = 1):
    """torchvision's paste_masks_in_image, [:, 0] > threshold."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    return paste_masks_in_image(masks, boxes, tuple(image_size), padding)[:, 0] > threshold
