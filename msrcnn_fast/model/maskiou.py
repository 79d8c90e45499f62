"""The MaskIoU branch's input, targets and loss, with the paper's variants (Tables 4-7).

Semantics: docs/semantics.md. Each variant is one small class; the tables at the bottom map the
option values (``maskiou_input="a"``, ``maskiou_target="target_class"``) to them. Adding a
variant is a class and a table entry here, nothing else.

- Table 4, what the MaskIoU head reads: :data:`MASKIOU_INPUTS` ("a" default).
- Table 5, which of its outputs are trained, on what: :data:`MASKIOU_TARGETS`.
- Table 6, which samples are trained: ``tau`` of :func:`maskiou_loss` (only targets > tau).
- Table 7, MS R-CNN*: :func:`ground_truth_maskiou` scores masks by their true MaskIoU.
"""

import torch
from torch import Tensor
from torchvision.ops import boxes as box_ops

from msrcnn_fast import ops

__all__ = [
    "MASKIOU_INPUTS",
    "MASKIOU_TARGETS",
    "MaskIoUInput",
    "MaskIoUTarget",
    "ground_truth_maskiou",
    "maskiou_loss",
    "present_class_targets",
]


# ---- Table 4: the MaskIoU head's input -----------------------------------------------------


class MaskIoUInput:
    """How the MaskIoU head's input is made from the RoI features [N, C, R, R] and the mask
    logits: those of each RoI's class [N, 1, 2R', 2R'], or of every class [N, K, ...] where
    ``every_class``. ``roi_size`` is the RoI features' size (14: the mask branch's own)."""

    description: str = ""
    roi_size: int = 14
    every_class: bool = False

    def channels(self, roi_channels: int, num_classes: int) -> int:
        raise NotImplementedError

    def __call__(self, roi_features: Tensor, mask_logits: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


class ConcatMask(MaskIoUInput):
    description = "(a) the class's mask (sigmoid, 2x2 max-pooled) concatenated with the 14x14 RoI features"

    def channels(self, roi_channels, num_classes):
        return roi_channels + 1

    def __call__(self, roi_features, mask_logits, labels):
        return ops.mask_pool_concat(roi_features, mask_logits, labels, "concat")


class MultiplyMask(MaskIoUInput):
    description = "(b) the class's mask multiplied into the RoI features"

    def channels(self, roi_channels, num_classes):
        return roi_channels

    def __call__(self, roi_features, mask_logits, labels):
        return ops.mask_pool_concat(roi_features, mask_logits, labels, "multiply")


class ConcatAllMasks(MaskIoUInput):
    description = "(c) every class's mask concatenated with the RoI features"
    every_class = True

    def channels(self, roi_channels, num_classes):
        return roi_channels + num_classes

    def __call__(self, roi_features, mask_logits, labels):
        return ops.mask_pool_concat(roi_features, mask_logits, labels, "concat_all")


class ConcatMask28(ConcatMask):
    description = "(d) the class's 28x28 mask concatenated with 28x28 RoI features"
    roi_size = 28  # the mask's own size: mask_pool_concat's window is then 1x1, no pooling


class MaskOnly(MaskIoUInput):
    description = "(e) the class's mask only"

    def channels(self, roi_channels, num_classes):
        return 1

    def __call__(self, roi_features, mask_logits, labels):
        return ops.mask_pool_concat(roi_features[:, :0], mask_logits, labels, "concat")


class FeaturesOnly(MaskIoUInput):
    description = "(f) the RoI features only"

    def channels(self, roi_channels, num_classes):
        return roi_channels

    def __call__(self, roi_features, mask_logits, labels):
        return roi_features


MASKIOU_INPUTS: dict[str, MaskIoUInput] = {
    "a": ConcatMask(),
    "b": MultiplyMask(),
    "c": ConcatAllMasks(),
    "d": ConcatMask28(),
    "e": MaskOnly(),
    "f": FeaturesOnly(),
}


# ---- Table 5: the training targets, Table 6: tau, the loss ---------------------------------


class MaskIoUTarget:
    """Which outputs of the MaskIoU head [N, K] are trained, and to what. ``present_classes``:
    whether it needs the targets of the other classes present in each RoI
    (:func:`present_class_targets`)."""

    description: str = ""
    present_classes: bool = False

    def errors(self, pred: Tensor, labels: Tensor, targets: Tensor, present, tau: float) -> Tensor:
        """Prediction - target of every trained output of the samples whose target > tau.

        pred [N, K]; labels [N] and targets [N]: each RoI's ground-truth class and its MaskIoU;
        present: (rows, classes, targets) of the other classes present in the RoIs, or None.
        """
        raise NotImplementedError


class TargetClassOnly(MaskIoUTarget):
    description = "#1: the ground-truth class's output only"

    def errors(self, pred, labels, targets, present, tau):
        rows = torch.arange(len(labels), device=labels.device)
        return (pred[rows, labels] - targets)[targets > tau]


class AllClasses(MaskIoUTarget):
    description = "#2: every class's output; classes absent from the RoI have target 0"
    present_classes = True

    def errors(self, pred, labels, targets, present, tau):
        rows = torch.arange(len(labels), device=labels.device)
        target = torch.zeros_like(pred)
        present_rows, present_classes, present_targets = present
        target[present_rows, present_classes] = present_targets
        target[rows, labels] = targets
        return (pred - target)[targets > tau].flatten()


class PresentClasses(MaskIoUTarget):
    description = "#3: the output of every class present in the RoI"
    present_classes = True

    def errors(self, pred, labels, targets, present, tau):
        own = TargetClassOnly().errors(pred, labels, targets, None, tau)
        present_rows, present_classes, present_targets = present
        other = (pred[present_rows, present_classes] - present_targets)[present_targets > tau]
        return torch.cat([own, other])


MASKIOU_TARGETS: dict[str, MaskIoUTarget] = {
    "target_class": TargetClassOnly(),
    "all_classes": AllClasses(),
    "present_classes": PresentClasses(),
}


def maskiou_loss(
    target: MaskIoUTarget, pred: Tensor, labels: Tensor, targets: Tensor, present, *, tau: float, weight: float
) -> Tensor:
    """weight x 0.5 x the mean squared error over the outputs ``target`` trains (0 if none)."""
    error = target.errors(pred, labels, targets.to(pred.dtype), present, tau)
    if error.numel() == 0:
        return pred.sum() * 0
    return weight * 0.5 * error.square().mean()


def present_class_targets(boxes, labels, logits, target, row_offset):
    """For each RoI, every other class with a ground-truth box overlapping it, and the MaskIoU
    of that class's predicted mask with that class's best-overlapping instance.

    boxes [P, 4] and labels [P]: one image's positive RoIs and their classes; logits [P, K, M, M]:
    every class's mask logits; target: the image's boxes, labels and masks. Returns (rows +
    row_offset, classes, maskiou), one entry per (RoI, other present class).
    """
    gt_boxes, gt_labels = target["boxes"], target["labels"]
    empty = torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return empty, empty, torch.zeros(0, dtype=logits.dtype, device=boxes.device)
    overlap = box_ops.box_iou(boxes, gt_boxes)  # [P, G]
    same_class = gt_labels[None, :] == gt_labels[:, None]  # [G, G]
    rows, gts = [], []
    for g in range(len(gt_boxes)):
        # RoIs that g overlaps, whose own class is not g's, where g is its class's best.
        best = (overlap * same_class[g][None, :]).argmax(dim=1) == g
        hit = torch.nonzero((overlap[:, g] > 0) & best & (labels != gt_labels[g])).flatten()
        rows.append(hit)
        gts.append(torch.full_like(hit, g))
    rows, gts = torch.cat(rows), torch.cat(gts)
    classes = gt_labels[gts].to(torch.int64)
    _, maskiou = ops.maskiou_targets(target["masks"], boxes[rows], gts, logits[rows, classes], logits.shape[-1])
    return rows + row_offset, classes, maskiou


# ---- Table 7: MS R-CNN* ---------------------------------------------------------------------


def ground_truth_maskiou(boxes, labels, label_mask_logits, target):
    """MS R-CNN*: the MaskIoU of each detection's mask (logits [K, M, M] of its class) with its
    best-overlapping ground-truth instance of the same class (0 where there is none)."""
    if len(boxes) == 0 or len(target["boxes"]) == 0:
        return torch.zeros(len(boxes), dtype=label_mask_logits.dtype, device=boxes.device)
    overlap = box_ops.box_iou(boxes, target["boxes"].to(boxes.dtype))
    overlap = overlap * (labels[:, None] == target["labels"][None, :])
    best, matched = overlap.max(dim=1)
    _, maskiou = ops.maskiou_targets(target["masks"], boxes, matched, label_mask_logits, label_mask_logits.shape[-1])
    maskiou = maskiou.to(label_mask_logits.dtype)
    return torch.where(best > 0, maskiou, torch.zeros_like(maskiou))
