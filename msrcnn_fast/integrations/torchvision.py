"""torchvision interop: turn a torchvision MaskRCNN into a Mask Scoring R-CNN.

- ``from_torchvision(tv_model)``: a new MaskScoringRCNN with tv_model's backbone, RPN and heads
  (weights kept, copied) and a new MaskIoU head.
- ``add_mask_scoring(tv_model)``: patches tv_model in place: our RoIAlign, NMS and mask pasting
  kernels swapped in, and a MaskIoU head added; tv_model then returns mask_scores too.
- ``torchvision_to_msrcnn_state_dict``: a torchvision Mask R-CNN state_dict renamed for
  msrcnn_fast's own ResNet-FPN models (msrcnn_resnet50_fpn, ...); it lives in
  msrcnn_fast/model/torchvision_weights.py, which the model's weight loading uses.
"""

import copy

from torch import Tensor, nn
from torchvision.models.detection.mask_rcnn import MaskRCNN

from msrcnn_fast.model.mask_head import class_mask_logits, upsampled_class_logits
from msrcnn_fast.model.maskiou_head import MaskIoUHead
from msrcnn_fast.model.rcnn import MaskScoringRCNN
from msrcnn_fast.model.roi_heads import MaskScoringRoIHeads
from msrcnn_fast.model.rpn import ProposalNetwork
from msrcnn_fast.model.torchvision_weights import is_torchvision_state_dict, torchvision_to_msrcnn_state_dict
from msrcnn_fast.model.transform import DetectionTransform
from msrcnn_fast.ops import MultiScaleRoIAlign

__all__ = ["add_mask_scoring", "from_torchvision", "is_torchvision_state_dict", "torchvision_to_msrcnn_state_dict"]


class TorchvisionMaskHead(nn.Module):
    """torchvision's MaskRCNNHeads + MaskRCNNPredictor with MaskHead's interface."""

    def __init__(self, head: nn.Module, predictor: nn.Module):
        super().__init__()
        self.head = head
        self.upsample = predictor

    @property
    def predictor(self) -> nn.Module:
        return self.upsample.mask_fcn_logits

    def features(self, x: Tensor) -> Tensor:
        return self.upsample.relu(self.upsample.conv5_mask(self.head(x)))

    def predict_classes(self, features: Tensor, labels: Tensor) -> Tensor:
        return class_mask_logits(self.predictor, features, labels)

    def class_logits(self, x: Tensor, labels: Tensor) -> Tensor:
        return upsampled_class_logits(self.upsample.conv5_mask, self.predictor, self.head(x), labels)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(self.features(x))


def _our_pooler(pooler: nn.Module) -> MultiScaleRoIAlign:
    return MultiScaleRoIAlign(
        list(pooler.featmap_names),
        pooler.output_size,
        pooler.sampling_ratio,
        canonical_scale=pooler.canonical_scale,
        canonical_level=pooler.canonical_level,
    )


def add_mask_scoring(
    tv_model: MaskRCNN,
    *,
    maskiou_conv_dim: int = 256,
    maskiou_fc_dim: int = 1024,
    channels_last: bool = True,
    **options,
):
    """Patches a torchvision MaskRCNN in place into a Mask Scoring R-CNN and returns it.

    Its RPN filters proposals with msrcnn_fast.ops.batched_nms, its transform pastes masks
    with msrcnn_fast.ops.paste_masks (bool masks), and its RoI heads become
    MaskScoringRoIHeads on the same box and mask modules, with our fused RoIAlign and a new
    MaskIoU head. ``channels_last`` batches the images channels-last (faster; False keeps
    torchvision's NCHW, and its exact numerics). ``options`` are MaskScoringRoIHeads options
    (mask_scoring, soft_nms, ...).
    """
    if not isinstance(tv_model, MaskRCNN):
        raise TypeError(f"tv_model: expected a torchvision MaskRCNN, got {type(tv_model).__name__}")
    old = tv_model.roi_heads
    num_classes = old.box_predictor.cls_score.out_features
    roi_channels = old.mask_head[0][0].in_channels if isinstance(old.mask_head, nn.Sequential) else 256
    tv_model.rpn = ProposalNetwork.from_torchvision(tv_model.rpn)
    tv_model.transform = DetectionTransform.from_torchvision(tv_model.transform, channels_last=channels_last)
    maskiou_head = MaskIoUHead(
        num_classes=num_classes, in_channels=roi_channels + 1, conv_dim=maskiou_conv_dim, fc_dim=maskiou_fc_dim
    )
    settings = dict(
        fg_iou_thresh=old.proposal_matcher.high_threshold,
        bg_iou_thresh=old.proposal_matcher.low_threshold,
        batch_size_per_image=old.fg_bg_sampler.batch_size_per_image,
        positive_fraction=old.fg_bg_sampler.positive_fraction,
        bbox_reg_weights=old.box_coder.weights,
        score_thresh=old.score_thresh,
        nms_thresh=old.nms_thresh,
        detections_per_img=old.detections_per_img,
    )
    tv_model.roi_heads = MaskScoringRoIHeads(
        box_roi_pool=_our_pooler(old.box_roi_pool),
        box_head=old.box_head,
        box_predictor=old.box_predictor,
        mask_roi_pool=_our_pooler(old.mask_roi_pool),
        mask_head=TorchvisionMaskHead(old.mask_head, old.mask_predictor),
        maskiou_head=maskiou_head.to(next(old.parameters()).device),
        **(settings | options),
    ).train(tv_model.training)
    return tv_model


def from_torchvision(tv_model: MaskRCNN, **options) -> MaskScoringRCNN:
    """A new MaskScoringRCNN from a torchvision MaskRCNN (left unchanged): its weights, its
    settings, our kernels and a new MaskIoU head. ``options`` as in add_mask_scoring."""
    patched = add_mask_scoring(copy.deepcopy(tv_model), **options)
    model = MaskScoringRCNN(
        backbone=patched.backbone, rpn=patched.rpn, roi_heads=patched.roi_heads, transform=patched.transform
    )
    return model.train(tv_model.training)
