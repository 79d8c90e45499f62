"""Bring your own backbone: mask_scoring_rcnn(backbone, ...) on any torchvision-style backbone (a
module with out_channels returning an ordered dict of maps), as torchvision's MaskRCNN takes."""

import pytest
import torch
from torch import nn
from torchvision.models.detection.backbone_utils import mobilenet_backbone

from msrcnn_fast.model import mask_scoring_rcnn
from msrcnn_fast.model.backbone import resnet_fpn_backbone
from msrcnn_fast.model.batchnorm_folding import FoldedFrozenBatchNorm2d
from msrcnn_fast.ops import Conv3x3
from tests.model.test_model import LOSSES, NARROW, OUTPUTS, images, make_targets

BACKBONE_OPTIONS = ("fpn_channels", "norm", "trainable_backbone_layers")  # msrcnn_resnet_fpn's, not the detector's
HEADS = {name: value for name, value in NARROW.items() if name not in BACKBONE_OPTIONS}
BACKBONES = {
    # torchvision's MobileNetV3-FPN: frozen batch norm (folded by the factory), maps "0", "1", "pool".
    "mobilenet_v3_fpn": lambda: mobilenet_backbone(
        backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6
    ),
    "resnet18_fpn": lambda: resnet_fpn_backbone(depth=18, norm="bn", trainable_layers=5, out_channels=32),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_one_training_step_and_inference_on_a_given_backbone(name):
    torch.manual_seed(0)
    backbone = BACKBONES[name]()
    maps = len(backbone(torch.zeros(1, 3, 64, 64)))
    model = mask_scoring_rcnn(backbone, num_classes=4, **HEADS).train()
    assert model.backbone is backbone
    assert len(model.rpn.anchor_generator.sizes) == maps
    assert model.roi_heads.box_roi_pool.featmap_names == [str(i) for i in range(maps - 1)]  # not "pool"
    assert any(isinstance(m, Conv3x3) for m in backbone.modules())
    if name == "mobilenet_v3_fpn":
        assert any(type(m) is FoldedFrozenBatchNorm2d for m in backbone.modules())
    batch = images()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = model(batch, make_targets(batch))
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any(n.startswith("backbone.") for n in changed) and any(n.startswith("roi_heads.maskiou") for n in changed)
    model.eval()
    with torch.no_grad():
        out = model(images(1))
    assert OUTPUTS <= set(out[0])


def test_a_backbone_without_out_channels_or_maps_is_refused():
    with pytest.raises(ValueError, match="backbone: expected a module with an int out_channels"):
        mask_scoring_rcnn(nn.Identity())
    with pytest.raises(ValueError, match="backbone: expected a module returning an ordered dict of maps"):
        mask_scoring_rcnn(nn.Conv2d(3, 8, 3))  # out_channels, but one map, not a dict
