"""Mask Scoring R-CNN: torchvision's GeneralizedRCNN flow over our RPN, RoI heads and transform."""

import torch
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

__all__ = ["MaskScoringRCNN"]


class MaskScoringRCNN(GeneralizedRCNN):
    """Mask R-CNN + a MaskIoU head (Huang et al., CVPR 2019), with torchvision's contract.

    ``model(images, targets=None)``: images is a list of Tensor[3, H, W] in [0, 1]; targets
    (training, or MS R-CNN* evaluation) a list of dicts with ``boxes`` (float [N, 4], x1 y1 x2
    y2 in pixels), ``labels`` (int64 [N]) and ``masks`` (uint8 [N, H, W]).

    Training returns the losses: loss_objectness, loss_rpn_box_reg, loss_classifier,
    loss_box_reg, loss_mask, loss_maskiou. Evaluation returns, per image: ``boxes``,
    ``labels``, ``scores`` (classification), ``masks`` (bool [K, 1, H, W]), ``mask_scores``
    (score x predicted MaskIoU) and ``maskiou`` (the predicted MaskIoU of the predicted class).
    """

    def __init__(self, *, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module):
        super().__init__(backbone, rpn, roi_heads, transform)

    @torch.no_grad()
    def diagnose(self, images: list[Tensor], targets: list[dict[str, Tensor]]):
        """Detections and what each head makes of the ground truth, in one pass (evaluation mode).

        ``targets`` as in training (boxes, labels, masks). Returns (detections, as
        ``model(images)`` in evaluation; diagnostics, one dict per image): ``gt_labels`` [G] and
        ``gt_class_probs`` [G, classes], the box head's class probabilities for each ground-truth
        box (is the classifier right where the boxes are right?); ``positive_labels``,
        ``positive_maskiou`` and ``positive_maskiou_target`` [P], the MaskIoU head's prediction and
        its target on the positives as training defines them (RPN proposals and ground-truth boxes
        at IoU >= 0.5, with their ground-truth class), the quantity the MaskIoU head is trained on.
        """
        if self.training:
            raise RuntimeError("diagnose: call model.eval() first")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, targets = self.transform(images, [dict(t) for t in targets])
        features = self.backbone(image_list.tensors)
        proposals, _ = self.rpn(image_list, features)
        detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_sizes)
        diagnostics = self.roi_heads.diagnose(features, proposals, image_list.image_sizes, targets)
        return detections, diagnostics
