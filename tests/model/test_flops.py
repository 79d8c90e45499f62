"""Multiply-adds per RoI of the heads, counted by torch.utils.flop_counter on the real modules,
against the paper's figures (docs/semantics.md): MaskIoU head 0.39 G, mask head 0.53 G
(81 classes). FlopCounterMode counts a convolution or a matmul as 2 FLOPs per multiply-add.

The modules run on the meta device: shapes only, no arithmetic.
"""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from msrcnn_fast.model import MaskHead, MaskIoUHead
from msrcnn_fast.ops import Conv3x3

ROIS = 8


def count_macs(module, x, backward=False):
    with FlopCounterMode(display=False) as counter:
        out = module(x)
        if backward:
            out.backward(torch.ones_like(out))
    return counter.get_total_flops() / 2


def layer_macs(module, roi_size):
    """Multiply-adds per RoI from the layers' shapes, walked in order (the arithmetic the paper's
    figure is made of)."""
    size, total = roi_size, 0
    for layer in module.modules():
        if isinstance(layer, nn.ConvTranspose2d):
            total += layer.in_channels * layer.out_channels * 4 * size * size  # each input pixel: 2x2 outputs
            size *= 2
        elif isinstance(layer, nn.Conv2d):
            size = (size + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
            total += layer.in_channels * layer.out_channels * layer.kernel_size[0] ** 2 * size * size
        elif isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features
    return total


@pytest.mark.parametrize("exact_aten", [True, False])
def test_maskiou_head_is_0_39_gmac_per_roi(exact_aten):
    with torch.device("meta"):
        head = Conv3x3.convert(MaskIoUHead(), exact_aten=exact_aten)
        macs = count_macs(head, torch.empty(ROIS, 257, 14, 14)) / ROIS
    assert macs == layer_macs(head, 14)
    assert abs(macs / 0.39e9 - 1) < 0.02, macs


@pytest.mark.parametrize("exact_aten", [True, False])
def test_mask_head_is_0_53_gmac_per_roi(exact_aten):
    with torch.device("meta"):
        head = Conv3x3.convert(MaskHead(), exact_aten=exact_aten)
        macs = count_macs(head, torch.empty(ROIS, 256, 14, 14)) / ROIS
    assert macs == layer_macs(head, 14)
    assert abs(macs / 0.53e9 - 1) < 0.02, macs


def test_backward_counts_match_aten():
    """The backward ops count as ATen's convolution_backward does: input and weight gradients,
    each as many multiply-adds as the forward."""
    counts = {}
    for exact_aten in (True, False):
        with torch.device("meta"):
            conv = Conv3x3(257, 256, relu=True, exact_aten=exact_aten)
            x = torch.empty(ROIS, 257, 14, 14, requires_grad=True)
            counts[exact_aten] = count_macs(conv, x, backward=True)
    assert counts[False] == counts[True] == 3 * ROIS * 257 * 256 * 9 * 196
