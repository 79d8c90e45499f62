"""Backbone pieces: frozen batch norm folded into the convolutions; normalisation choices."""

import pytest
import torch
from torchvision.models import mobilenet_v3_small, resnet
from torchvision.ops import FrozenBatchNorm2d

from msrcnn_fast.model.backbone import norm_layer_of, resnet_fpn_backbone
from msrcnn_fast.model.batchnorm_folding import FoldedFrozenBatchNorm2d, FrozenBatchNormConv3x3, fold_frozen_batchnorm
from msrcnn_fast.ops import Conv3x3

NETWORKS = {
    "resnet18": lambda: resnet.resnet18(weights=None, norm_layer=FrozenBatchNorm2d),
    "resnet50": lambda: resnet.resnet50(weights=None, norm_layer=FrozenBatchNorm2d),
    # Conv2dNormActivation blocks (nn.Sequential), depthwise convolutions, squeeze-excitation.
    "mobilenet_v3": lambda: mobilenet_v3_small(weights=None, norm_layer=FrozenBatchNorm2d),
}


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("convert", [False, True])
def test_folded_frozen_batchnorm_computes_the_same_network(network, convert):
    """Every FrozenBatchNorm2d after a conv is folded (on Conv3x3s too, after Conv3x3.convert),
    with the same state_dict and the same outputs."""
    torch.manual_seed(0)
    plain = NETWORKS[network]().eval()
    with torch.no_grad():  # non-trivial statistics and affine parameters
        for module in plain.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    folded = NETWORKS[network]().eval()
    folded.load_state_dict(plain.state_dict())
    if convert:
        Conv3x3.convert(folded)
    norms = sum(type(m) is FrozenBatchNorm2d for m in folded.modules())
    assert fold_frozen_batchnorm(folded) == norms > 0
    assert not any(type(m) is FrozenBatchNorm2d for m in folded.modules())
    assert sum(type(m) is FoldedFrozenBatchNorm2d for m in folded.modules()) == norms
    assert any(type(m) is FrozenBatchNormConv3x3 for m in folded.modules()) == convert
    assert folded.state_dict().keys() == plain.state_dict().keys()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = plain(x), folded(x)
    # Only the summation order differs: float32 rounding, relative to the activations' scale.
    torch.testing.assert_close(actual, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)
    # Gradients reach the convolution weights as before.
    folded.train()
    folded(x).sum().backward()
    first_conv = next(m for m in folded.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_norm_choices():
    assert norm_layer_of("frozen_bn") is FrozenBatchNorm2d
    assert isinstance(norm_layer_of("gn")(64), torch.nn.GroupNorm)
    with pytest.raises(ValueError, match="norm: expected"):
        norm_layer_of("layer")


def test_trainable_layers_freeze_the_rest():
    backbone = resnet_fpn_backbone(depth=18, norm="bn", trainable_layers=2)
    trainable = {name.split(".")[1] for name, p in backbone.body.named_parameters(prefix="body") if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    assert all(p.requires_grad for p in backbone.fpn.parameters())


@pytest.mark.parametrize(("norm", "fpn_norm"), [("gn", "auto"), ("gn", "gn"), ("bn", "bn"), ("frozen_bn", "gn")])
def test_a_normalised_fpn_has_a_scale_that_cannot_run_away(norm, fpn_norm):
    # Training from scratch, the FPN's output scale was the one nothing bounded: each step that
    # grew its weights grew the heads' inputs and so the next step (the engine tests' tiny config
    # diverged to NaN on most seeds). Normalised, its outputs do not depend on its weights' scale.
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(
        depth=18, norm=norm, fpn_norm=fpn_norm, trainable_layers=5, returned_stages=(2, 3), out_channels=32
    )
    backbone.train()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = backbone(x)
        for module in backbone.fpn.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(1000.0)
        after = backbone(x)
    for name in before:
        torch.testing.assert_close(after[name], before[name], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(("norm", "fpn_norm"), [("frozen_bn", "auto"), ("bn", "auto"), ("gn", "none")])
def test_the_papers_plain_fpn(norm, fpn_norm):
    # Pretrained statistics (and BatchNorm, which torchvision's weights can be loaded into) keep the
    # FPN of the paper and torchvision by default; "none" asks for it with any backbone norm.
    backbone = resnet_fpn_backbone(depth=18, norm=norm, fpn_norm=fpn_norm, returned_stages=(4, 5))
    norms = (torch.nn.GroupNorm, torch.nn.BatchNorm2d, FrozenBatchNorm2d)
    assert not any(isinstance(m, norms) for m in backbone.fpn.modules())
    assert all(conv.bias is not None for conv in backbone.fpn.modules() if isinstance(conv, torch.nn.Conv2d))


def test_fpn_norm_choices():
    with pytest.raises(ValueError, match="fpn_norm: expected one of"):
        resnet_fpn_backbone(depth=18, fpn_norm="layer")


@pytest.mark.parametrize(("depth", "last_norm"), [(18, "bn2"), (50, "bn3")])
def test_zero_init_residual_starts_every_block_as_the_identity(depth, last_norm):
    # Each residual block's last normalisation starts at scale 0, so at initialisation every block
    # passes its input through (plus the shortcut's projection where it has one); the default keeps
    # torchvision's scale 1.
    torch.manual_seed(0)
    zero = resnet_fpn_backbone(depth=depth, norm="gn", trainable_layers=5, zero_init_residual=True)
    plain = resnet_fpn_backbone(depth=depth, norm="gn", trainable_layers=5)
    blocks = [m for m in zero.body.modules() if hasattr(m, last_norm)]
    assert len(blocks) == (8 if depth == 18 else 16)
    assert all(getattr(b, last_norm).weight.abs().sum() == 0 for b in blocks)
    assert all(b.bn1.weight.min() == 1 for b in blocks)
    assert all(getattr(b, last_norm).weight.min() == 1 for b in plain.body.modules() if hasattr(b, last_norm))
    block = zero.body.layer1[1]  # no projection: the block is ReLU(x), the identity on x >= 0
    x = torch.rand(1, block.conv1.in_channels, 16, 16)
    torch.testing.assert_close(block(x), x)


def test_zero_init_residual_is_a_model_option():
    from msrcnn_fast.model import factories

    model = factories.msrcnn_resnet18_fpn(
        num_classes=3, norm="gn", trainable_backbone_layers=5, zero_init_residual=True
    )
    assert model.backbone.body.layer4[1].bn2.weight.abs().sum() == 0
