"""The RoI heads of Mask Scoring R-CNN: box head, mask head and MaskIoU head.

Training (per image): proposals plus the ground-truth boxes are matched (IoU >= 0.5 is a
positive) and sampled (512, a quarter positive); the box head is trained on all of them, the
mask head and the MaskIoU head on the positives. The MaskIoU head reads the mask head's
ground-truth-class logits through sigmoid and 2x2 max pooling, next to the 14x14 RoI features
(nothing detached), and regresses the MaskIoU target of ../shared/SEMANTICS.md with
0.5 x MSE. Inference: per-class NMS (hard 0.5, or Gaussian Soft-NMS), top 100, then masks and
mask_score = classification score x predicted MaskIoU of the predicted class.

The hot ops are msrcnn_fast.ops: the fused multi-level RoIAlign, (soft) NMS,
mask_pool_concat and maskiou_targets.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import boxes as box_ops

from msrcnn_fast import ops

__all__ = ["MASKIOU_INPUTS", "MASKIOU_TARGETS", "MaskScoringRoIHeads"]

# Paper, Table 4: what the MaskIoU head reads.
MASKIOU_INPUTS = {
    "a": "target mask (sigmoid, 2x2 max-pooled) concatenated with the 14x14 RoI features",
    "b": "target mask multiplied into the RoI features",
    "c": "all masks concatenated with the RoI features",
    "d": "target mask (28x28) concatenated with 28x28 RoI features",
    "e": "target mask only",
    "f": "RoI features only",
}
# Paper, Table 5: which outputs are trained, and on what.
MASKIOU_TARGETS = {
    "target_class": "#1: the ground-truth class's output only",
    "all_classes": "#2: every class's output; absent classes have target 0",
    "present_classes": "#3: the output of every class present in the RoI",
}


def maskiou_input_channels(variant: str, *, roi_channels: int, num_classes: int) -> int:
    """Input channels of the MaskIoU head for a Table 4 input variant."""
    channels = {"a": roi_channels + 1, "b": roi_channels, "c": roi_channels + num_classes, "d": roi_channels + 1}
    channels.update({"e": 1, "f": roi_channels})
    if variant not in channels:
        raise ValueError(f"maskiou_input: expected one of {sorted(MASKIOU_INPUTS)}, got {variant!r}")
    return channels[variant]


def fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """Cross-entropy over classes and smooth-L1 (beta 1/9) on the positives' class deltas."""
    labels = torch.cat(labels)
    regression_targets = torch.cat(regression_targets)
    classification_loss = F.cross_entropy(class_logits, labels)
    positives = torch.nonzero(labels > 0).flatten()
    box_regression = box_regression.reshape(box_regression.size(0), -1, 4)
    box_loss = F.smooth_l1_loss(
        box_regression[positives, labels[positives]], regression_targets[positives], beta=1 / 9, reduction="sum"
    )
    return classification_loss, box_loss / labels.numel()


class MaskScoringRoIHeads(nn.Module):
    """Box, mask and MaskIoU heads over FPN features.

    Args (keyword-only):
        box_roi_pool, mask_roi_pool: MultiScaleRoIAlign poolers (7x7 and 14x14).
        box_head, box_predictor: the box branch (BoxHead, BoxPredictor).
        mask_head: RoI features [N, 256, 14, 14] -> per-class mask logits [N, C, 28, 28].
        maskiou_head: MaskIoU head input -> per-class MaskIoU [N, C].
        mask_roi_pool_28: a 28x28 pooler, needed only by MaskIoU input variant "d".
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights:
            proposal matching and sampling (Mask R-CNN's defaults).
        score_thresh, nms_thresh, detections_per_img: inference (0.05, 0.5, 100).
        soft_nms: Gaussian Soft-NMS (sigma soft_nms_sigma, score threshold
            soft_nms_score_thresh) instead of hard NMS at nms_thresh.
        mask_scoring: mask_scores = scores x predicted MaskIoU (False: mask_scores = scores,
            the MaskIoU head is not run at inference).
        maskiou_input: Table 4 variant "a" (default) to "f".
        maskiou_target: Table 5 variant "target_class" (default), "all_classes",
            "present_classes".
        maskiou_tau: Table 6: only samples with a MaskIoU target > tau are trained (0).
        maskiou_loss_weight: weight of the 0.5 x MSE MaskIoU loss (1).
        gt_maskiou_at_eval: MS R-CNN* (Table 7): given targets at evaluation, score masks by
            the ground-truth MaskIoU instead of the predicted one.
    """

    def __init__(
        self,
        *,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_roi_pool: nn.Module,
        mask_head: nn.Module,
        maskiou_head: nn.Module,
        mask_roi_pool_28: nn.Module | None = None,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        soft_nms: bool = False,
        soft_nms_sigma: float = 0.6,
        soft_nms_score_thresh: float = 1e-3,
        mask_scoring: bool = True,
        maskiou_input: str = "a",
        maskiou_target: str = "target_class",
        maskiou_tau: float = 0.0,
        maskiou_loss_weight: float = 1.0,
        gt_maskiou_at_eval: bool = False,
    ):
        super().__init__()
        if maskiou_input not in MASKIOU_INPUTS:
            raise ValueError(f"maskiou_input: expected one of {sorted(MASKIOU_INPUTS)}, got {maskiou_input!r}")
        if maskiou_target not in MASKIOU_TARGETS:
            raise ValueError(f"maskiou_target: expected one of {sorted(MASKIOU_TARGETS)}, got {maskiou_target!r}")
        if maskiou_input == "d" and mask_roi_pool_28 is None:
            raise ValueError("mask_roi_pool_28: MaskIoU input 'd' needs a 28x28 RoI pooler")
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.maskiou_head = maskiou_head
        self.mask_roi_pool_28 = mask_roi_pool_28
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = det_utils.BoxCoder(bbox_reg_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.soft_nms = soft_nms
        self.soft_nms_sigma = soft_nms_sigma
        self.soft_nms_score_thresh = soft_nms_score_thresh
        self.mask_scoring = mask_scoring
        self.maskiou_input = maskiou_input
        self.maskiou_target = maskiou_target
        self.maskiou_tau = maskiou_tau
        self.maskiou_loss_weight = maskiou_loss_weight
        self.gt_maskiou_at_eval = gt_maskiou_at_eval

    # ---- training: proposals and targets --------------------------------------------------

    def select_training_samples(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]):
        """Matched and sampled proposals (ground truth included) with labels and box targets."""
        sampled_proposals, matched_idxs, labels = [], [], []
        for boxes, target in zip(proposals, targets):
            gt_boxes, gt_labels = target["boxes"].to(boxes.dtype), target["labels"]
            boxes = torch.cat([boxes, gt_boxes])
            if gt_boxes.numel() == 0:
                matched = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
                label = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
            else:
                quality = box_ops.box_iou(gt_boxes, boxes)
                matched = self.proposal_matcher(quality)
                label = gt_labels[matched.clamp(min=0)].to(torch.int64)
                label[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
                label[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            sampled_proposals.append(boxes)
            matched_idxs.append(matched.clamp(min=0))
            labels.append(label)
        positive, negative = self.fg_bg_sampler(labels)
        regression_targets = []
        for i, (pos, neg) in enumerate(zip(positive, negative)):
            keep = torch.nonzero(pos | neg).flatten()
            sampled_proposals[i] = sampled_proposals[i][keep]
            matched_idxs[i] = matched_idxs[i][keep]
            labels[i] = labels[i][keep]
            gt_boxes = targets[i]["boxes"]
            if gt_boxes.numel() == 0:
                gt_boxes = torch.zeros((1, 4), dtype=sampled_proposals[i].dtype, device=sampled_proposals[i].device)
                matched_idxs[i] = torch.zeros_like(matched_idxs[i])
            regression_targets.append(
                self.box_coder.encode_single(
                    gt_boxes[matched_idxs[i]].to(sampled_proposals[i].dtype), sampled_proposals[i]
                )
            )
        return sampled_proposals, matched_idxs, labels, regression_targets

    # ---- inference: boxes -----------------------------------------------------------------

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """Per image: decoded, clipped, thresholded boxes after per-class (soft) NMS, top-k."""
        num_classes = class_logits.shape[-1]
        boxes_per_image = [len(p) for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image)
        pred_scores = F.softmax(class_logits, -1).split(boxes_per_image)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=boxes.device).expand_as(scores)
            # Drop the background column, then one candidate per (RoI, class).
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.nonzero(scores > self.score_thresh).flatten()
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            if self.soft_nms:
                keep, scores = ops.batched_soft_nms(
                    boxes, scores, labels, self.nms_thresh, self.soft_nms_sigma, self.soft_nms_score_thresh
                )
                keep, scores = keep[: self.detections_per_img], scores[: self.detections_per_img]
            else:
                keep = ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
                scores = scores[keep]
            all_boxes.append(boxes[keep])
            all_scores.append(scores)
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    # ---- the MaskIoU head's input and targets ---------------------------------------------

    def maskiou_features(self, mask_features, mask_logits, labels, features_28=None):
        """The MaskIoU head's input for the configured Table 4 variant (one fused op each)."""
        variant = self.maskiou_input
        if variant == "f":
            return mask_features
        if variant == "d":
            return ops.mask_pool_concat(features_28, mask_logits, labels)  # 1x1 window: unpooled
        if variant == "e":
            return ops.mask_pool_concat(mask_features[:, :0], mask_logits, labels)
        mode = {"a": "concat", "b": "multiply", "c": "concat_all"}[variant]
        return ops.mask_pool_concat(mask_features, mask_logits, labels, mode)

    def maskiou_loss(self, pred_maskiou, labels, maskiou_targets, extra=None):
        """0.5 x MSE on the samples whose target exceeds tau, by the Table 5 variant.

        extra: for "present_classes", (rows, classes, targets) of the other classes present in
        each RoI.
        """
        rows = torch.arange(len(labels), device=labels.device)
        selected = maskiou_targets > self.maskiou_tau
        if self.maskiou_target == "all_classes":
            target = torch.zeros_like(pred_maskiou)
            target[rows, labels] = maskiou_targets
            error = (pred_maskiou - target)[selected].flatten()
        else:
            error = (pred_maskiou[rows, labels] - maskiou_targets)[selected]
            if extra is not None:
                extra_rows, extra_classes, extra_targets = extra
                keep = extra_targets > self.maskiou_tau
                error = torch.cat([error, (pred_maskiou[extra_rows, extra_classes] - extra_targets)[keep]])
        if error.numel() == 0:
            return pred_maskiou.sum() * 0
        return self.maskiou_loss_weight * 0.5 * error.square().mean()

    def present_class_targets(self, boxes, matched, labels, logits, target, row_offset):
        """Table 5 #3: for each RoI, every other class with a ground-truth box overlapping it,
        the MaskIoU of that class's predicted mask with that class's best-overlapping instance."""
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

    # ---- forward --------------------------------------------------------------------------

    def forward(self, features, proposals, image_shapes, targets=None):
        """Training: ([], losses). Inference: (per-image detections with mask probabilities
        [K, 1, 28, 28] in the RoI, mask_scores and maskiou, {})."""
        if self.training:
            if targets is None:
                raise ValueError("targets: expected targets (boxes, labels, masks) in training mode")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            losses.update(self.mask_losses(features, proposals, image_shapes, matched_idxs, labels, targets))
            return [], losses
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        return self.predict_masks(features, boxes, scores, labels, image_shapes, targets), {}

    def mask_losses(self, features, proposals, image_shapes, matched_idxs, labels, targets):
        positive = [torch.nonzero(label > 0).flatten() for label in labels]
        pos_proposals = [p[k] for p, k in zip(proposals, positive)]
        pos_matched = [m[k] for m, k in zip(matched_idxs, positive)]
        per_image_labels = [label[k] for label, k in zip(labels, positive)]
        pos_labels = torch.cat(per_image_labels)
        mask_features = self.mask_roi_pool(features, pos_proposals, image_shapes)
        every_class = self.maskiou_input == "c" or self.maskiou_target == "present_classes"
        mask_logits, gt_class_logits = self.mask_logits(mask_features, pos_labels, every_class)
        counts = [len(p) for p in pos_proposals]
        mask_targets, maskiou_targets = ops.maskiou_targets_batched(
            [t["masks"] for t in targets], pos_proposals, pos_matched, gt_class_logits.detach(), mask_logits.shape[-1]
        )
        extra = None
        if self.maskiou_target == "present_classes":
            parts, offset = [], 0
            for boxes, matched, image_labels, all_logits, target in zip(
                pos_proposals, pos_matched, per_image_labels, mask_logits.detach().split(counts), targets
            ):
                parts.append(self.present_class_targets(boxes, matched, image_labels, all_logits, target, offset))
                offset += len(boxes)
            extra = [torch.cat(column) for column in zip(*parts)]
        features_28 = None
        if self.maskiou_input == "d":
            features_28 = self.mask_roi_pool_28(features, pos_proposals, image_shapes)
        pred_maskiou = self.maskiou_head(self.maskiou_features(mask_features, mask_logits, pos_labels, features_28))
        if len(pos_labels) == 0:
            return {"loss_mask": mask_logits.sum() * 0, "loss_maskiou": pred_maskiou.sum() * 0}
        loss_mask = F.binary_cross_entropy_with_logits(gt_class_logits, mask_targets.to(gt_class_logits.dtype))
        maskiou_targets = maskiou_targets.to(pred_maskiou.dtype)
        if extra is not None:
            extra[2] = extra[2].to(pred_maskiou.dtype)
        return {
            "loss_mask": loss_mask,
            "loss_maskiou": self.maskiou_loss(pred_maskiou, pos_labels, maskiou_targets, extra),
        }

    def mask_logits(self, mask_features, labels, every_class):
        """(mask_logits, class_logits [N, M, M] of each RoI's class): mask_logits holds every
        class's logits [N, K, M, M] when `every_class` (the variants that read them), else only
        `labels`' [N, 1, M, M] (the mask loss, the MaskIoU head and the pasted masks read no other
        class; the predictor then does 1 / K of the work)."""
        upsampled = self.mask_head.features(mask_features)
        if every_class:
            mask_logits = self.mask_head.predictor(upsampled)
            return mask_logits, mask_logits[torch.arange(len(labels), device=labels.device), labels]
        mask_logits = self.mask_head.predict_classes(upsampled, labels)
        return mask_logits, mask_logits[:, 0]

    def gt_maskiou(self, boxes, labels, logits, target):
        """MS R-CNN*: the MaskIoU of each detection's mask with its best-overlapping
        ground-truth instance of the same class (0 where there is none)."""
        if len(boxes) == 0 or len(target["boxes"]) == 0:
            return torch.zeros(len(boxes), dtype=logits.dtype, device=boxes.device)
        overlap = box_ops.box_iou(boxes, target["boxes"].to(boxes.dtype))
        overlap = overlap * (labels[:, None] == target["labels"][None, :])
        best, matched = overlap.max(dim=1)
        _, maskiou = ops.maskiou_targets(target["masks"], boxes, matched, logits, logits.shape[-1])
        return torch.where(best > 0, maskiou.to(logits.dtype), torch.zeros_like(maskiou, dtype=logits.dtype))

    def predict_masks(self, features, boxes, scores, labels, image_shapes, targets=None):
        mask_features = self.mask_roi_pool(features, boxes, image_shapes)
        all_labels = torch.cat(labels)
        rows = torch.arange(len(all_labels), device=all_labels.device)
        mask_logits, class_logits = self.mask_logits(mask_features, all_labels, self.maskiou_input == "c")
        counts = [len(b) for b in boxes]
        if self.gt_maskiou_at_eval and targets is not None:
            maskiou = torch.cat(
                [
                    self.gt_maskiou(b, label, logits, target)
                    for b, label, logits, target in zip(boxes, labels, class_logits.split(counts), targets)
                ]
            )
        elif self.mask_scoring:
            features_28 = self.mask_roi_pool_28(features, boxes, image_shapes) if self.maskiou_input == "d" else None
            pred = self.maskiou_head(self.maskiou_features(mask_features, mask_logits, all_labels, features_28))
            maskiou = pred[rows, all_labels]
        else:
            maskiou = None
        probabilities = class_logits[:, None].sigmoid().split(counts)
        maskiou_per_image = maskiou.split(counts) if maskiou is not None else [None] * len(boxes)
        results = []
        for b, s, label, mask, iou in zip(boxes, scores, labels, probabilities, maskiou_per_image):
            result = {"boxes": b, "labels": label, "scores": s, "masks": mask}
            result["mask_scores"] = s if iou is None else s * iou
            if iou is not None:
                result["maskiou"] = iou
            results.append(result)
        return results
