"""The RoI heads of Mask Scoring R-CNN: box head, mask head and MaskIoU head.

Training (per image): proposals plus the ground-truth boxes are matched (IoU >= 0.5 is a
positive) and sampled (512, a quarter positive); the box head is trained on all of them, the
mask head and the MaskIoU head on the positives. The MaskIoU head reads the mask head's
ground-truth-class logits through sigmoid and 2x2 max pooling, next to the 14x14 RoI features
(nothing detached), and regresses the MaskIoU target of docs/semantics.md with 0.5 x MSE.
Inference: per-class NMS (hard 0.5, or Gaussian Soft-NMS), top 100, then masks and
mask_score = classification score x predicted MaskIoU of the predicted class.

The hot ops are msrcnn_fast.ops: the fused multi-level RoIAlign, (soft) NMS,
mask_pool_concat and maskiou_targets. The MaskIoU branch's variants (the paper's Tables 4-7)
are in msrcnn_fast/model/maskiou.py.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import boxes as box_ops

from msrcnn_fast import ops
from msrcnn_fast.model.maskiou import (
    MASKIOU_INPUTS,
    MASKIOU_TARGETS,
    ground_truth_maskiou,
    maskiou_loss,
    present_class_targets,
)

__all__ = ["MaskScoringRoIHeads", "fastrcnn_loss"]


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
        maskiou_roi_pool: the MaskIoU head's own pooler, for an input variant whose RoI
            features are not the mask branch's 14x14 ones ("d": 28x28); None: the mask branch's.
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights:
            proposal matching and sampling (Mask R-CNN's defaults).
        score_thresh, nms_thresh, detections_per_img: inference (0.05, 0.5, 100).
        soft_nms: Gaussian Soft-NMS (sigma soft_nms_sigma, score threshold
            soft_nms_score_thresh) instead of hard NMS at nms_thresh.
        mask_scoring: mask_scores = scores x predicted MaskIoU (False: mask_scores = scores,
            the MaskIoU head is not run at inference).
        maskiou_input: Table 4 variant "a" (default) to "f" (msrcnn_fast.model.maskiou).
        maskiou_target: Table 5 variant "target_class" (default), "all_classes",
            "present_classes" (msrcnn_fast.model.maskiou).
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
        maskiou_roi_pool: nn.Module | None = None,
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
        if MASKIOU_INPUTS[maskiou_input].roi_size != 14 and maskiou_roi_pool is None:
            size = MASKIOU_INPUTS[maskiou_input].roi_size
            raise ValueError(f"maskiou_roi_pool: MaskIoU input {maskiou_input!r} needs a {size}x{size} RoI pooler")
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.maskiou_head = maskiou_head
        self.maskiou_roi_pool = maskiou_roi_pool
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
        self.maskiou_input = MASKIOU_INPUTS[maskiou_input]
        self.maskiou_target = MASKIOU_TARGETS[maskiou_target]
        self.maskiou_tau = maskiou_tau
        self.maskiou_loss_weight = maskiou_loss_weight
        self.gt_maskiou_at_eval = gt_maskiou_at_eval

    # ---- training: proposals and targets --------------------------------------------------

    def match_proposals(self, boxes: Tensor, target: dict[str, Tensor]):
        """One image's proposals plus its ground-truth boxes, each matched to a ground truth:
        (boxes, matched ground-truth index, label: the class at IoU >= fg_iou_thresh, 0 for
        background, -1 between the thresholds)."""
        gt_boxes, gt_labels = target["boxes"].to(boxes.dtype), target["labels"]
        boxes = torch.cat([boxes, gt_boxes])
        if gt_boxes.numel() == 0:
            matched = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
            return boxes, matched, torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
        matched = self.proposal_matcher(box_ops.box_iou(gt_boxes, boxes))
        label = gt_labels[matched.clamp(min=0)].to(torch.int64)
        label[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
        label[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
        return boxes, matched.clamp(min=0), label

    def select_training_samples(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]):
        """Matched and sampled proposals (ground truth included) with labels and box targets."""
        sampled_proposals, matched_idxs, labels = [], [], []
        for boxes, target in zip(proposals, targets):
            boxes, matched, label = self.match_proposals(boxes, target)
            sampled_proposals.append(boxes)
            matched_idxs.append(matched)
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
        boxes_per_image = [p.shape[0] for p in proposals]
        # BoxCoder.decode without its `if box_sum > 0` (a data-dependent branch torch.export cannot trace)
        decoded = self.box_coder.decode_single(box_regression, torch.cat(proposals))
        pred_boxes = decoded.reshape(box_regression.shape[0], num_classes, 4).split(boxes_per_image)
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
                keep = ops.batched_nms(boxes, scores, labels, self.nms_thresh, max_kept=self.detections_per_img)
                scores = scores[keep]
            all_boxes.append(boxes[keep])
            all_scores.append(scores)
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

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

    def maskiou_roi_features(self, features, mask_features, boxes, image_shapes):
        """The RoI features the MaskIoU input reads: its own pooler's, or the mask branch's."""
        if self.maskiou_roi_pool is None:
            return mask_features
        return self.maskiou_roi_pool(features, boxes, image_shapes)

    def positive_maskiou(self, features, pos_proposals, pos_matched, per_image_labels, image_shapes, targets):
        """The mask and MaskIoU branches on positive RoIs (their ground-truth class `labels`):
        (mask_logits, label_mask_logits, mask_targets, maskiou_targets, pred_maskiou [N, K])."""
        pos_labels = torch.cat(per_image_labels)
        mask_features = self.mask_roi_pool(features, pos_proposals, image_shapes)
        every_class = self.maskiou_input.every_class or self.maskiou_target.present_classes
        mask_logits, label_mask_logits = self.predict_mask_logits(mask_features, pos_labels, every_class)
        mask_targets, maskiou_targets = ops.maskiou_targets_batched(
            [t["masks"] for t in targets], pos_proposals, pos_matched, label_mask_logits.detach(), mask_logits.shape[-1]
        )
        roi_features = self.maskiou_roi_features(features, mask_features, pos_proposals, image_shapes)
        pred_maskiou = self.maskiou_head(self.maskiou_input(roi_features, mask_logits, pos_labels))
        return mask_logits, label_mask_logits, mask_targets, maskiou_targets, pred_maskiou

    @staticmethod
    def positives(proposals, matched_idxs, labels):
        """Per image, the proposals of label > 0: (proposals, matched indices, labels)."""
        keep = [torch.nonzero(label > 0).flatten() for label in labels]
        return (
            [p[k] for p, k in zip(proposals, keep)],
            [m[k] for m, k in zip(matched_idxs, keep)],
            [label[k] for label, k in zip(labels, keep)],
        )

    def mask_losses(self, features, proposals, image_shapes, matched_idxs, labels, targets):
        pos_proposals, pos_matched, per_image_labels = self.positives(proposals, matched_idxs, labels)
        pos_labels = torch.cat(per_image_labels)
        mask_logits, label_mask_logits, mask_targets, maskiou_targets, pred_maskiou = self.positive_maskiou(
            features, pos_proposals, pos_matched, per_image_labels, image_shapes, targets
        )
        present = None
        if self.maskiou_target.present_classes:
            parts, offset = [], 0
            all_logits = mask_logits.detach().split([len(p) for p in pos_proposals])
            for boxes, image_labels, logits, target in zip(pos_proposals, per_image_labels, all_logits, targets):
                parts.append(present_class_targets(boxes, image_labels, logits, target, offset))
                offset += len(boxes)
            present = [torch.cat(column) for column in zip(*parts)]
        if len(pos_labels) == 0:
            return {"loss_mask": mask_logits.sum() * 0, "loss_maskiou": pred_maskiou.sum() * 0}
        loss_mask = F.binary_cross_entropy_with_logits(label_mask_logits, mask_targets.to(label_mask_logits.dtype))
        if present is not None:
            present[2] = present[2].to(pred_maskiou.dtype)
        loss_maskiou = maskiou_loss(
            self.maskiou_target,
            pred_maskiou,
            pos_labels,
            maskiou_targets,
            present,
            tau=self.maskiou_tau,
            weight=self.maskiou_loss_weight,
        )
        return {"loss_mask": loss_mask, "loss_maskiou": loss_maskiou}

    @torch.no_grad()
    def diagnose(self, features, proposals, image_shapes, targets):
        """What the heads make of the ground truth, per image (see MaskScoringRCNN.diagnose):
        gt_labels [G] and gt_class_probs [G, classes], the box head's class probabilities of
        each ground-truth box; positive_labels [P], positive_maskiou [P] (predicted, of the
        ground-truth class) and positive_maskiou_target [P] on the positives as training
        defines them (every proposal and ground-truth box at IoU >= fg_iou_thresh, unsampled)."""
        gt_boxes = [t["boxes"] for t in targets]
        gt_logits, _ = self.box_predictor(self.box_head(self.box_roi_pool(features, gt_boxes, image_shapes)))
        gt_probs = F.softmax(gt_logits, -1).split([len(b) for b in gt_boxes])
        matches = [self.match_proposals(boxes, target) for boxes, target in zip(proposals, targets)]
        pos_proposals, pos_matched, per_image_labels = self.positives(*zip(*matches))
        _, _, _, maskiou_targets, pred = self.positive_maskiou(
            features, pos_proposals, pos_matched, per_image_labels, image_shapes, targets
        )
        pos_labels = torch.cat(per_image_labels)
        pred = pred[torch.arange(len(pos_labels), device=pred.device), pos_labels]
        counts = [len(p) for p in pos_proposals]
        return [
            {
                "gt_labels": target["labels"],
                "gt_class_probs": probs,
                "positive_labels": labels,
                "positive_maskiou": predicted,
                "positive_maskiou_target": wanted,
            }
            for target, probs, labels, predicted, wanted in zip(
                targets, gt_probs, per_image_labels, pred.split(counts), maskiou_targets.split(counts)
            )
        ]

    def predict_mask_logits(self, mask_features, labels, every_class):
        """(mask_logits, label_mask_logits [N, M, M]: each RoI's mask logits of its class `labels`):
        mask_logits holds every class's logits [N, K, M, M] when `every_class` (the variants that
        read them), else only `labels`' [N, 1, M, M] (the mask loss, the MaskIoU head and the pasted
        masks read no other class; the predictor then does 1 / K of the work)."""
        if every_class:
            mask_logits = self.mask_head(mask_features)
            return mask_logits, mask_logits[torch.arange(len(labels), device=labels.device), labels]
        mask_logits = self.mask_head.class_logits(mask_features, labels)
        return mask_logits, mask_logits[:, 0]

    def predict_masks(self, features, boxes, scores, labels, image_shapes, targets=None):
        mask_features = self.mask_roi_pool(features, boxes, image_shapes)
        all_labels = torch.cat(labels)
        rows = torch.arange(all_labels.shape[0], device=all_labels.device)
        mask_logits, label_mask_logits = self.predict_mask_logits(
            mask_features, all_labels, self.maskiou_input.every_class
        )
        counts = [b.shape[0] for b in boxes]
        if self.gt_maskiou_at_eval and targets is not None:
            per_image = zip(boxes, labels, label_mask_logits.split(counts), targets)
            maskiou = torch.cat([ground_truth_maskiou(*detections) for detections in per_image])
        elif self.mask_scoring:
            roi_features = self.maskiou_roi_features(features, mask_features, boxes, image_shapes)
            pred = self.maskiou_head(self.maskiou_input(roi_features, mask_logits, all_labels))
            maskiou = pred[rows, all_labels]
        else:
            maskiou = None
        probabilities = label_mask_logits[:, None].sigmoid().split(counts)
        maskiou_per_image = maskiou.split(counts) if maskiou is not None else [None] * len(boxes)
        results = []
        for b, s, label, mask, iou in zip(boxes, scores, labels, probabilities, maskiou_per_image):
            result = {"boxes": b, "labels": label, "scores": s, "masks": mask}
            result["mask_scores"] = s if iou is None else s * iou
            if iou is not None:
                result["maskiou"] = iou
            results.append(result)
        return results
