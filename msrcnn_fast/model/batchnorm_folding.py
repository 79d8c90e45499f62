"""FrozenBatchNorm2d folded into the convolution before it, on any torchvision-style backbone.

conv(x, W) * scale + shift == conv(x, W * scale) + shift, exactly, in training as in evaluation
(a FrozenBatchNorm2d's statistics and affine parameters are frozen buffers), so the map is
written once instead of three times. The parameters and the state_dict are unchanged: each
convolution is rebuilt as a FrozenBatchNormConv2d (FrozenBatchNormConv3x3 for a Conv3x3) on the
same Parameters, and the norm as a FoldedFrozenBatchNorm2d (an identity) on the same buffers.
"""

import re

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from msrcnn_fast.ops import Conv3x3

__all__ = ["FoldedFrozenBatchNorm2d", "FrozenBatchNormConv2d", "FrozenBatchNormConv3x3", "fold_frozen_batchnorm"]


def _folded(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> tuple[Tensor, Tensor]:
    """The weight and bias of conv followed by bn, as one convolution."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    shift = bn.bias - bn.running_mean * scale
    bias = shift if conv.bias is None else shift + conv.bias * scale
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


class FrozenBatchNormConv2d(nn.Conv2d):
    """An nn.Conv2d followed by its FrozenBatchNorm2d ``frozen_bn`` (a reference, not a
    submodule: its buffers stay where they are in the state_dict), computed as one convolution."""

    frozen_bn: FrozenBatchNorm2d

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, *_folded(self, self.frozen_bn))


class FrozenBatchNormConv3x3(Conv3x3):
    """A Conv3x3 (msrcnn::conv3x3) followed by its FrozenBatchNorm2d, as one convolution."""

    frozen_bn: FrozenBatchNorm2d

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, *_folded(self, self.frozen_bn))


class FoldedFrozenBatchNorm2d(FrozenBatchNorm2d):
    """A FrozenBatchNorm2d whose work the preceding convolution does: an identity that keeps
    the buffers (and so the state_dict)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _folded_conv(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> nn.Conv2d:
    if type(conv) is Conv3x3:
        folded = FrozenBatchNormConv3x3(
            conv.in_channels,
            conv.out_channels,
            stride=conv.stride[0],
            bias=conv.bias is not None,
            relu=conv.relu,
            exact_aten=conv.exact_aten,
            device="meta",
        )
    else:
        folded = FrozenBatchNormConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",
        )
    folded.weight, folded.bias = conv.weight, conv.bias
    object.__setattr__(folded, "frozen_bn", bn)
    return folded.train(conv.training)


def _identity_norm(bn: FrozenBatchNorm2d) -> FoldedFrozenBatchNorm2d:
    folded = FoldedFrozenBatchNorm2d(bn.weight.numel(), bn.eps)
    for name, buffer in bn.named_buffers(recurse=False):
        setattr(folded, name, buffer)
    return folded.train(bn.training)


def _conv_norm_pairs(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, norm name) of the conv -> FrozenBatchNorm2d pairs of ``module``: the
    consecutive children of an nn.Sequential (torchvision's Conv2dNormActivation, a ResNet's
    downsample), and the children named ``conv<k>`` and ``bn<k>`` of any other module (a
    torchvision ResNet's stem and blocks, whose forward runs each conv<k> straight into bn<k>)."""
    pairs = []
    for parent in module.modules():
        names = [name for name, _ in parent.named_children()]
        if isinstance(parent, nn.Sequential):
            candidates = zip(names, names[1:])
        else:
            convs = [(name, re.fullmatch(r"conv(\d*)", name)) for name in names]
            candidates = [(name, f"bn{match[1]}") for name, match in convs if match and f"bn{match[1]}" in names]
        for conv_name, bn_name in candidates:
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            if (
                type(conv) in (nn.Conv2d, Conv3x3)
                and type(bn) is FrozenBatchNorm2d
                and conv.out_channels == bn.weight.numel()
            ):
                pairs.append((parent, conv_name, bn_name))
    return pairs


def fold_frozen_batchnorm(module: nn.Module) -> int:
    """Folds every FrozenBatchNorm2d of ``module`` that directly follows a convolution (see
    _conv_norm_pairs) into it, in place; returns how many were folded."""
    pairs = _conv_norm_pairs(module)
    for parent, conv_name, bn_name in pairs:
        bn = _identity_norm(getattr(parent, bn_name))
        setattr(parent, conv_name, _folded_conv(getattr(parent, conv_name), bn))
        setattr(parent, bn_name, bn)
    return len(pairs)
