"""Plain-PyTorch references of the ops, written from ../shared/SEMANTICS.md and the papers.

Slow and simple on purpose: tests and benchmarks compare the kernels against these.
(RoIAlign is checked against torchvision itself.)
"""

import math

import torch
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
