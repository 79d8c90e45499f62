"""ResNet + FPN backbones: torchvision's ResNet and FPN, with the paper's variants.

- Normalisation: FrozenBatchNorm2d (pretrained statistics, the paper's setting), BatchNorm2d
  or GroupNorm (training from scratch, e.g. the CPU demo: nothing can be downloaded).
- FPN normalisation (`fpn_norm`): none (the paper's and torchvision's FPN, so their weights
  load), GroupNorm or BatchNorm after each FPN convolution. "auto" normalises the FPN with
  GroupNorm when the backbone's norm is "gn", i.e. trained from scratch (as detectron2's
  from-scratch GN recipe): an unnormalised FPN between a normalised backbone and the heads is
  then the one scale nothing bounds, and it runs away: each larger step makes the features
  larger, which makes the next step larger (in the tiny engine-test config the FPN's output
  deviation went from ~8 to ~2e7 in 7 iterations, then the heads overflowed to NaN).
- Feature maps: C2-C5 (standard FPN) or C4-C5 only (the paper's ResNet-18 FPN); P6 by max
  pooling for the RPN.
- Deformable convolutions (DCN): the 3x3 convolution of every block in stages C3-C5 becomes a
  deformable one (torchvision.ops.deform_conv2d), its offsets predicted by a zero-initialised
  3x3 convolution, so that it starts out as the plain convolution.
"""

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d, deform_conv2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from msrcnn_fast.ops import GroupNormReLU

__all__ = ["DeformableConv2d", "fpn_norm_layer_of", "norm_layer_of", "resnet_fpn_backbone"]

RESNETS = {18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50, 101: resnet.resnet101}
NORMS = ("frozen_bn", "bn", "gn")
FPN_NORMS = ("auto", "none", "bn", "gn")


def norm_layer_of(norm: str, *, gn_groups: int = 32) -> Callable[[int], nn.Module]:
    """The normalisation layer for `norm`: "frozen_bn", "bn" or "gn" (GroupNorm: an nn.GroupNorm
    computed by msrcnn::group_norm_relu on the CPU, whose channels-last kernel took the demo's
    GroupNorms from 1.2 to 0.2 ms forward on the box head's 256 x 64 x 7x7)."""
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: GroupNormReLU(group_count(channels, gn_groups), channels, relu=False)
    raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")


def group_count(channels: int, groups: int = 32) -> int:
    """`groups` GroupNorm groups (detectron2's 32), fewer where `channels` does not divide by them."""
    groups = min(groups, channels)
    while channels % groups:
        groups -= 1
    return groups


class DeformableConv2d(nn.Module):
    """A 3x3 deformable convolution (DCN v1) that starts as the plain convolution.

    Parameters `weight` (and `bias`) have the shapes of the nn.Conv2d it replaces, so a plain
    checkpoint loads into it; `offset` predicts the 2 x 3 x 3 sampling offsets.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.groups != 1:
            raise ValueError(f"conv: expected a 3x3 convolution without groups, got {conv}")
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
        self.offset = nn.Conv2d(
            conv.in_channels, 18, 3, stride=conv.stride, padding=conv.padding, dilation=conv.dilation
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        return deform_conv2d(
            x, self.offset(x), self.weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation
        )


def _deformable_stages(body: resnet.ResNet, stages: Sequence[int]) -> None:
    for stage in stages:
        for block in getattr(body, f"layer{stage - 1}"):
            block.conv2 = DeformableConv2d(block.conv2)


def fpn_norm_layer_of(fpn_norm: str, *, norm: str) -> Callable[[int], nn.Module] | None:
    """The FPN's normalisation layer for `fpn_norm` (see FPN_NORMS) next to a backbone `norm`."""
    if fpn_norm not in FPN_NORMS:
        raise ValueError(f"fpn_norm: expected one of {FPN_NORMS}, got {fpn_norm!r}")
    if fpn_norm == "auto":
        fpn_norm = "gn" if norm == "gn" else "none"
    return None if fpn_norm == "none" else norm_layer_of(fpn_norm)


def resnet_fpn_backbone(
    *,
    depth: int,
    norm: str = "frozen_bn",
    fpn_norm: str = "auto",
    trainable_layers: int = 3,
    returned_stages: Sequence[int] = (2, 3, 4, 5),
    deformable_stages: Sequence[int] = (),
    out_channels: int = 256,
    weights_path: str | None = None,
    zero_init_residual: bool = False,
) -> BackboneWithFPN:
    """ResNet-`depth` with an FPN on the stages `returned_stages` (2 = C2 ... 5 = C5).

    Args:
        depth: 18, 34, 50 or 101.
        norm: "frozen_bn", "bn" or "gn".
        fpn_norm: "auto" (GroupNorm when `norm` is "gn", else none), "none", "bn" or "gn": the
            normalisation after each FPN convolution (whose bias is then dropped).
        trainable_layers: how many of (layer4, layer3, layer2, layer1, stem) train; the rest
            are frozen (0-5).
        returned_stages: the C levels the FPN reads; the output has one map per stage
            (keys "0", "1", ...) plus "pool" (P6, max-pooled from the last).
        deformable_stages: stages whose 3x3 convolutions are deformable (the paper's DCN: 3-5).
        weights_path: a local ResNet state_dict (ImageNet weights) to start from; nothing is
            downloaded.
        zero_init_residual: start each residual block's last normalisation at scale 0, so that
            every block starts as the identity (Goyal et al. 2017; torchvision's option of the
            same name), for training from scratch.
    """
    if depth not in RESNETS:
        raise ValueError(f"depth: expected one of {sorted(RESNETS)}, got {depth}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers: expected 0 to 5, got {trainable_layers}")
    if not returned_stages or any(s not in (2, 3, 4, 5) for s in returned_stages):
        raise ValueError(f"returned_stages: expected stages among 2-5, got {tuple(returned_stages)}")
    if any(s not in (3, 4, 5) for s in deformable_stages):
        raise ValueError(f"deformable_stages: expected stages among 3-5, got {tuple(deformable_stages)}")
    body = RESNETS[depth](weights=None, norm_layer=norm_layer_of(norm), zero_init_residual=zero_init_residual)
    if weights_path is not None:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        # The classifier (fc) is not part of the detector: with or without it is fine.
        missing, unexpected = body.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{weights_path}: not a ResNet-{depth} state_dict (missing {missing[:5]}, ...)")
    _deformable_stages(body, deformable_stages)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trainable.append("bn1")
    for name, parameter in body.named_parameters():
        if all(not name.startswith(layer) for layer in trainable):
            parameter.requires_grad_(False)
    stage_channels = {2: 64, 3: 128, 4: 256, 5: 512}
    expansion = 4 if depth >= 50 else 1
    return BackboneWithFPN(
        body,
        return_layers={f"layer{s - 1}": str(i) for i, s in enumerate(returned_stages)},
        in_channels_list=[stage_channels[s] * expansion for s in returned_stages],
        out_channels=out_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=fpn_norm_layer_of(fpn_norm, norm=norm),
    )
