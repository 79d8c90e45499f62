"""Hard NMS (drop-ins for torchvision's ``nms`` / ``batched_nms``) and Soft-NMS.

Kernels: ``torch.ops.msrcnn.{nms, batched_nms, soft_nms, batched_soft_nms}`` (csrc/ops/nms).
Categories are processed independently (in parallel on the CPU, a block each on the GPU),
never as one pass over all boxes.

Semantics shared by all four:

- boxes are (x1, y1, x2, y2); float32, float64, float16 or bfloat16 boxes and scores
  (half types are computed in float32; outputs keep the scores' dtype);
- IoU = intersection / union with areas (x2 - x1 + offset) * (y2 - y1 + offset); ``offset``
  is 0 (default) or 1 for the legacy "+1" convention; IoU is 0 when the union is empty or not
  finite: boxes whose areas overflow the compute type (coordinates beyond about +-1e19 in
  float32) neither suppress nor decay other boxes (torchvision's nms keeps them too: a NaN
  IoU suppresses nothing);
- NaN or infinite coordinates or scores, boxes not [N, 4], scores or idxs not [N], idxs not
  of an integer dtype, or tensors on different devices raise an error naming the argument;
  any integer is a category (negative ones included);
- meta tensors raise a ValueError (the number of kept boxes depends on their values); under
  FakeTensorMode (torch.compile, torch.export) that number is an unbacked SymInt.
"""

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from msrcnn_fast.ops.errors import call_dropin

__all__ = ["batched_nms", "batched_soft_nms", "nms", "soft_nms"]


@torch.fx.wrap
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, offset: float = 0.0) -> Tensor:
    """Greedy hard NMS, as ``torchvision.ops.nms``.

    A box is suppressed when its IoU with a kept, higher-scoring box is greater than
    ``iou_threshold`` (strictly, as torchvision). ``offset``: 0 or 1 (see the module's notes).

    Returns:
        int64 Tensor of the kept boxes' indices, by decreasing score (equal scores: by index).
    """
    if torch.jit.is_scripting():
        return torch.ops.msrcnn.nms(boxes, scores, iou_threshold, offset)
    return call_dropin(torch.ops.msrcnn.nms, boxes, scores, float(iou_threshold), float(offset))


@torch.fx.wrap
def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float,
    offset: float = 0.0,
    max_kept: int | None = None,
) -> Tensor:
    """Hard NMS per category, as ``torchvision.ops.batched_nms``.

    Boxes of different categories (values of ``idxs``) never suppress each other. Boxes with
    no elements give no indices whatever the other arguments are (None included), as
    torchvision's.

    ``max_kept``: return the first ``max_kept`` kept boxes only, as ``batched_nms(...)[:max_kept]``
    (a detector's top-k detections) but faster where there are many more boxes: whether a box
    is kept depends only on the boxes of its category that come before it (higher score, or
    equal score and lower index), so NMS over the highest-scoring ``BOXES_PER_KEPT`` x
    ``max_kept`` boxes (and every box tied with the lowest of them) decides those boxes exactly
    as NMS over all of them; only when that keeps fewer than ``max_kept`` does NMS run over all
    boxes. (Traced by torch.compile or torch.export, it is always the latter.)

    Returns:
        int64 Tensor of the kept boxes' indices, by decreasing score (equal scores: by index).
    """
    if torch.jit.is_scripting():
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64, device=boxes.device)
        kept = torch.ops.msrcnn.batched_nms(boxes, scores, idxs, iou_threshold, offset)
        return kept if max_kept is None else kept[:max_kept]
    if max_kept is not None and (isinstance(max_kept, bool) or not isinstance(max_kept, int) or max_kept < 0):
        raise ValueError(f"max_kept: expected None or an int >= 0, got {repr(max_kept)}")
    # Traced (torch.compile, torch.export), the size may be symbolic: the kernel handles empty
    # boxes itself, so no guard on it is needed there.
    if not torch.compiler.is_compiling():
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64, device=boxes.device)
        if max_kept and scores.dim() == 1 and scores.shape[0] > BOXES_PER_KEPT * max_kept:
            first = _first_kept(boxes, scores, idxs, float(iou_threshold), float(offset), max_kept)
            if first is not None:
                return first
    kept = call_dropin(torch.ops.msrcnn.batched_nms, boxes, scores, idxs, float(iou_threshold), float(offset))
    return kept if max_kept is None else kept[:max_kept]


# batched_nms(max_kept=k) first runs NMS over the highest-scoring BOXES_PER_KEPT * k boxes.
BOXES_PER_KEPT = 4


def _first_kept(boxes, scores, idxs, iou_threshold, offset, max_kept) -> Tensor | None:
    """The first max_kept indices of batched_nms over all boxes, from the highest-scoring boxes
    alone, or None where those keep fewer than max_kept. Bad input: None (the full call raises)."""
    n = scores.shape[0]
    if (
        boxes.shape != (n, 4)
        or idxs.shape != (n,)
        or not (boxes.device == scores.device == idxs.device)
        or not scores.dtype.is_floating_point
        or not torch.isfinite(scores).all()
    ):
        return None
    lowest = scores.topk(BOXES_PER_KEPT * max_kept, sorted=False).values.min()
    # Every box tied with the lowest score too: the candidates are all the boxes that come
    # before any of them, in the kernel's order (decreasing score, equal scores by index).
    candidates = torch.nonzero(scores >= lowest).flatten()
    kept = call_dropin(
        torch.ops.msrcnn.batched_nms, boxes[candidates], scores[candidates], idxs[candidates], iou_threshold, offset
    )
    return candidates[kept[:max_kept]] if kept.shape[0] >= max_kept else None


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 1e-3,
    method: str = "gaussian",
    *,
    offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al., 2017) of one category.

    Repeatedly takes the highest-scoring remaining box (equal scores: the lower index) and
    multiplies every other remaining box's score by a weight of its IoU with it:

    - ``"gaussian"``: exp(-iou^2 / sigma);
    - ``"linear"``: 1 - iou if iou >= iou_threshold, else 1;
    - ``"hard"``: 0 if iou >= iou_threshold, else 1.

    Every remaining box whose score is below ``score_threshold`` is dropped (boxes that start
    below it never enter), so every kept score is >= ``score_threshold``.

    Returns:
        ``(keep, new_scores)``: int64 indices into the INPUT boxes in selection order (which is
        also non-increasing final score), and those boxes' decayed scores.
    """
    return torch.ops.msrcnn.soft_nms(
        boxes, scores, float(iou_threshold), float(sigma), float(score_threshold), method, float(offset)
    )


def batched_soft_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 1e-3,
    method: str = "gaussian",
    *,
    offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS of each category (value of ``idxs``) on its own; see :func:`soft_nms`.

    Returns:
        ``(keep, new_scores)`` over all categories, by decreasing new score (equal scores: by
        index).
    """
    return torch.ops.msrcnn.batched_soft_nms(
        boxes, scores, idxs, float(iou_threshold), float(sigma), float(score_threshold), method, float(offset)
    )


def _check_fake(op, boxes, scores, idxs=None):
    # The C++ checks that need no values (csrc/ops/nms/nms_host.cpp), with the same error types:
    # the meta kernel runs where any argument is a meta tensor, also beside CPU ones.
    name = f"msrcnn::{op}"
    for other, other_name in ((scores, "scores"), (idxs, "idxs")):
        torch._check_value(
            other is None or other.device == boxes.device,
            lambda other=other, other_name=other_name: (
                f"{name}: expected boxes and {other_name} on one device, got {boxes.device} and {other.device}"
            ),
        )
    torch._check_value(
        boxes.dim() == 2 and boxes.size(1) == 4,
        lambda: f"{name}: expected boxes of shape [N, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}",
    )
    torch._check_value(scores.dim() == 1, lambda: f"{name}: expected scores of shape [N], got {tuple(scores.shape)}")
    torch._check_value(
        scores.size(0) == boxes.size(0),
        lambda: f"{name}: expected one score per box, got {boxes.size(0)} boxes and {scores.size(0)} scores",
    )
    torch._check_type(
        boxes.dtype.is_floating_point, lambda: f"{name}: expected floating-point boxes, got {boxes.dtype}"
    )
    torch._check_type(
        scores.dtype.is_floating_point, lambda: f"{name}: expected floating-point scores, got {scores.dtype}"
    )
    if idxs is not None:
        torch._check_value(
            idxs.dim() == 1 and idxs.size(0) == boxes.size(0),
            lambda: f"{name}: expected idxs of shape [{boxes.size(0)}] (one per box), got {tuple(idxs.shape)}",
        )
        torch._check_type(
            not idxs.dtype.is_floating_point and not idxs.dtype.is_complex and idxs.dtype != torch.bool,
            lambda: f"{name}: expected idxs of an integer dtype, got {idxs.dtype}",
        )


def _kept_fake(op, boxes, scores):
    # The number of kept boxes depends on the data: an unbacked SymInt under FakeTensorMode
    # (torch.compile, torch.export). Plain meta tensors hold no data: no size to give.
    torch._check_value(
        is_fake(boxes),
        lambda: (
            f"msrcnn::{op}: boxes and scores are meta tensors: the number of kept boxes depends on their "
            "values, which meta tensors do not hold (trace under FakeTensorMode, torch.compile or torch.export)"
        ),
    )
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64), scores.new_empty((kept,))


@torch.library.register_fake("msrcnn::nms")
def _nms_fake(boxes, scores, iou_threshold, offset):
    _check_fake("nms", boxes, scores)
    return _kept_fake("nms", boxes, scores)[0]


@torch.library.register_fake("msrcnn::batched_nms")
def _batched_nms_fake(boxes, scores, idxs, iou_threshold, offset):
    _check_fake("batched_nms", boxes, scores, idxs)
    return _kept_fake("batched_nms", boxes, scores)[0]


@torch.library.register_fake("msrcnn::soft_nms")
def _soft_nms_fake(boxes, scores, iou_threshold, sigma, score_threshold, method, offset):
    _check_fake("soft_nms", boxes, scores)
    return _kept_fake("soft_nms", boxes, scores)


@torch.library.register_fake("msrcnn::batched_soft_nms")
def _batched_soft_nms_fake(boxes, scores, idxs, iou_threshold, sigma, score_threshold, method, offset):
    _check_fake("batched_soft_nms", boxes, scores, idxs)
    return _kept_fake("batched_soft_nms", boxes, scores)
