"""A STAND-IN for msrcnn_fast.model's factories, for tests only (the real model is built in
parallel): torchvision's Mask R-CNN with the same call and output contract.

It accepts the real factories' keyword arguments (the MaskIoU-head ones are ignored) and, in
eval mode, adds `mask_scores` and `maskiou`. Its "predicted MaskIoU" is the mean mask
probability over the predicted mask (a classic mask-confidence heuristic, not a MaskIoU head),
so that mask scores differ from classification scores and the evaluation has two rankings.

backbone="resnet18" is an R-18 FPN on C4 and C5 (the paper's R-18 recipe); backbone="tiny" is three convs
at stride 8, for tests that must take milliseconds.
"""

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign, misc

from msrcnn_fast import ops

IGNORED = ("weights", "maskiou_conv_dim", "maskiou_fc_dim", "soft_nms")


def _norm_layer(norm):
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(min(8, channels), channels)
    if norm == "frozen_bn":
        return misc.FrozenBatchNorm2d
    raise ValueError(f"norm must be bn, gn or frozen_bn, got {norm!r}")


class TinyBackbone(nn.Module):
    def __init__(self, norm_layer, channels=16):
        super().__init__()
        layers, width = [], 3
        for _ in range(3):
            layers += [nn.Conv2d(width, channels, 3, stride=2, padding=1, bias=False), norm_layer(channels), nn.ReLU()]
            width = channels
        self.body = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x):
        return OrderedDict([("0", self.body(x))])


class StandInMaskScoringRCNN(MaskRCNN):
    def forward(self, images, targets=None):
        outputs = super().forward(images, targets)
        if self.training:
            return outputs
        for output in outputs:
            probabilities = output["masks"][:, 0]
            foreground = probabilities > 0.5
            confidence = (probabilities * foreground).flatten(1).sum(1) / foreground.flatten(1).sum(1).clamp(min=1)
            output["maskiou"] = confidence
            output["mask_scores"] = output["scores"] * confidence
        return outputs


def standin_msrcnn(
    *,
    num_classes=81,
    backbone_weights=None,
    backbone="resnet18",
    norm="frozen_bn",
    trainable_backbone_layers=3,
    box_fc_dim=1024,
    mask_conv_dim=256,
    **kwargs,
):
    for name in IGNORED:
        kwargs.pop(name, None)
    norm_layer = _norm_layer(norm)
    if backbone == "tiny":
        body = TinyBackbone(norm_layer)
        featmap_names = ["0"]
        anchors = AnchorGenerator(sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),))
    else:
        trunk = resnet18(weights=None, norm_layer=norm_layer)
        if backbone_weights is not None:
            trunk.load_state_dict(torch.load(backbone_weights, weights_only=True), strict=False)
        # C4 and C5 only, as the paper's R-18 FPN ("we only use C4, C5 for RPN proposal and feature extractor")
        body = _resnet_fpn_extractor(trunk, trainable_backbone_layers, returned_layers=[3, 4], norm_layer=norm_layer)
        featmap_names = ["0", "1"]
        anchors = AnchorGenerator(sizes=((16, 32), (64, 128), (192, 256)), aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    channels = body.out_channels
    box_pool = MultiScaleRoIAlign(featmap_names, output_size=7, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(featmap_names, output_size=14, sampling_ratio=2)
    model = StandInMaskScoringRCNN(
        body,
        rpn_anchor_generator=anchors,
        box_roi_pool=box_pool,
        box_head=TwoMLPHead(channels * 7 * 7, box_fc_dim),
        box_predictor=FastRCNNPredictor(box_fc_dim, num_classes),
        mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(channels, [mask_conv_dim] * 4, 1),
        mask_predictor=MaskRCNNPredictor(mask_conv_dim, mask_conv_dim, num_classes),
        **kwargs,
    )
    # The project's RoIAlign kernels, as the real model uses (torchvision's constructor insists on its own type).
    model.roi_heads.box_roi_pool = ops.MultiScaleRoIAlign(featmap_names, output_size=7, sampling_ratio=2)
    model.roi_heads.mask_roi_pool = ops.MultiScaleRoIAlign(featmap_names, output_size=14, sampling_ratio=2)
    return model
