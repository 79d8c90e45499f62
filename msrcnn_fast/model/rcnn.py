"""Mask Scoring R-CNN: torchvision's GeneralizedRCNN flow over our RPN, RoI heads and transform."""

from torch import nn
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
