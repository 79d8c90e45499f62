"""msrcnn::group_norm_relu against F.relu(F.group_norm(...)) (WORK IN PROGRESS: CPU only)."""

import pytest
import torch
import torch.nn.functional as F

from msrcnn_fast.ops.group_norm_relu import GroupNormReLU, group_norm_relu

CASES = [
    # shape, groups, relu, channels-last
    ((256, 64, 7, 7), 32, True, True),
    ((2, 64, 48, 64), 32, False, True),
    ((3, 48, 5, 9), 4, True, False),
    ((2, 20, 6, 6), 5, True, True),
    ((1, 8, 1, 1), 2, False, True),
]


@pytest.mark.parametrize("shape,groups,relu,channels_last", CASES)
def test_forward_and_backward_match_group_norm_and_relu(shape, groups, relu, channels_last):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(shape[1], generator=g).requires_grad_()
    b = torch.randn(shape[1], generator=g).requires_grad_()
    xr = x.clone().requires_grad_()
    expected = F.group_norm(xr, groups, w, b, 1e-5)
    expected = F.relu(expected) if relu else expected
    xo = x.clone().requires_grad_()
    got = group_norm_relu(xo, groups, w, b, 1e-5, relu)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn(shape, generator=g)
    want = torch.autograd.grad(expected, (xr, w, b), grad)
    have = torch.autograd.grad(got, (xo, w, b), grad)
    for h, e in zip(have, want):
        torch.testing.assert_close(h, e, rtol=1e-4, atol=1e-4)


def test_statistics_keep_their_digits_far_from_zero_mean():
    """Maps at mean 1000 and std 2: float64 GroupNorm is the truth; ATen's float32 loses ~1e-2."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 20, 6, 6, generator=g) * 2 + 1000).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(20, generator=g), torch.randn(20, generator=g)
    truth = F.relu(F.group_norm(x.double(), 5, w.double(), b.double(), 1e-5))
    got = group_norm_relu(x, 5, w, b, 1e-5, True)
    assert ((got.double() - truth).abs().max() / truth.abs().max()).item() < 1e-5


def test_the_module_keeps_group_norms_state_dict():
    gn = torch.nn.GroupNorm(4, 16)
    fused = GroupNormReLU(4, 16)
    assert fused.state_dict().keys() == gn.state_dict().keys()


def test_bad_groups_and_parameters_name_the_argument():
    x = torch.randn(2, 6, 3, 3)
    with pytest.raises(ValueError, match="num_groups"):
        group_norm_relu(x, 4)
    with pytest.raises(ValueError, match="weight"):
        group_norm_relu(x, 3, torch.ones(5))
