"""msrcnn_fast.model.MaskIoUHead and MaskHead: architecture and init per docs/semantics.md,
their convs on msrcnn::conv3x3 against ATen's (exact_aten), torch.export.

On the CPU the op runs Winograd at stride 1 (ATen at stride 2); both compute in float32, in
different orders, through four convs and three FCs on narrow heads (16-wide convs): observed
differences are ~1e-6, checked at 1e-5 (atol and rtol). The Triton kernels (the op's CUDA
kernels) are checked against ATen in tests/kernels/test_conv3x3.py.
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from msrcnn_fast.model import MaskHead, MaskIoUHead
from msrcnn_fast.ops import Conv3x3

TOL = {"atol": 1e-5, "rtol": 1e-5}
MSRCNN_OP = torch.ops.msrcnn.conv3x3
ATEN_CONV = torch.ops.aten.convolution


def small_iou_head(**kwargs):
    return MaskIoUHead(num_classes=5, in_channels=17, conv_dim=16, fc_dim=32, roi_size=6, **kwargs)


def conv_ops_run(module, x):
    """The conv ops that ``module(x)`` dispatches (FlopCounterMode sees every op)."""
    with FlopCounterMode(display=False) as counter:
        module(x)
    return {op for op in counter.get_flop_counts()["Global"] if op in (MSRCNN_OP, ATEN_CONV)}


def test_architecture_per_semantics():
    with torch.device("meta"):
        head = MaskIoUHead()
        out = head(torch.empty(7, 257, 14, 14))
    assert out.shape == (7, 81)
    convs = list(head.convs)
    assert [tuple(c.weight.shape) for c in convs] == [(256, 257, 3, 3)] + [(256, 256, 3, 3)] * 3
    assert [c.stride for c in convs] == [(1, 1)] * 3 + [(2, 2)]
    assert all(c.padding == (1, 1) and c.bias is not None for c in convs)
    assert [(fc.in_features, fc.out_features) for fc in (head.fc1, head.fc2, head.predictor)] == [
        (256 * 7 * 7, 1024),
        (1024, 1024),
        (1024, 81),
    ]
    with torch.device("meta"):
        narrow = MaskIoUHead(num_classes=3, in_channels=9, conv_dim=8, fc_dim=16, roi_size=9)
        assert narrow(torch.empty(2, 9, 9, 9)).shape == (2, 3)
    assert narrow.fc1.in_features == 8 * 5 * 5  # 9 -> 5 by the stride-2 conv


def test_init_per_semantics():
    torch.manual_seed(0)
    head = MaskIoUHead()
    for conv in head.convs:  # Kaiming normal, fan_out = 256 * 9, gain sqrt(2)
        std = (2 / (conv.out_channels * 9)) ** 0.5
        assert abs(conv.weight.std().item() / std - 1) < 0.02
        assert abs(conv.weight.mean().item()) < 0.02 * std
    for fc in (head.fc1, head.fc2):  # Kaiming uniform, a = 1: bound sqrt(6 / (2 fan_in))
        bound = (3 / fc.in_features) ** 0.5
        assert bound * 0.999 < fc.weight.abs().max().item() <= bound
        assert abs(fc.weight.std().item() / (bound / 3**0.5) - 1) < 0.02
    assert abs(head.predictor.weight.std().item() / 0.01 - 1) < 0.03  # 82944 samples
    for module in [*head.convs, head.fc1, head.fc2, head.predictor]:
        assert not module.bias.any()


def heads_agree(make, x, grad):
    """make() on msrcnn::conv3x3 and on ATen's convs (exact_aten), same weights: same outputs and
    gradients (input and every parameter)."""
    ours = make()
    aten = Conv3x3.convert(make(), exact_aten=True)
    aten.load_state_dict(ours.state_dict())
    results = []
    for head in (ours, aten):
        xr = x.clone().requires_grad_()
        out = head(xr)
        out.backward(grad)
        results.append([out, xr.grad] + [p.grad for p in head.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **TOL)


def test_maskiou_head_on_the_op_matches_aten():
    torch.manual_seed(1)
    heads_agree(small_iou_head, torch.randn(3, 17, 6, 6), torch.randn(3, 5))


def test_mask_head_on_the_op_matches_aten():
    torch.manual_seed(2)
    heads_agree(
        lambda: MaskHead(num_classes=3, in_channels=16, conv_dim=16, num_convs=2),
        torch.randn(2, 16, 5, 5),
        torch.randn(2, 3, 10, 10),
    )


def test_mask_head_architecture():
    with torch.device("meta"):
        head = MaskHead()
        assert head(torch.empty(4, 256, 14, 14)).shape == (4, 81, 28, 28)
        assert MaskHead(num_classes=2, in_channels=8, conv_dim=4, num_convs=0)(torch.empty(1, 8, 3, 3)).shape == (
            1,
            2,
            6,
            6,
        )
    assert len(head.convs) == 4 and all(tuple(c.weight.shape) == (256, 256, 3, 3) for c in head.convs)
    assert tuple(head.deconv.weight.shape) == (256, 256, 2, 2) and head.deconv.stride == (2, 2)
    assert tuple(head.predictor.weight.shape) == (81, 256, 1, 1)


def test_the_heads_convs_run_the_op_unless_exact_aten():
    head = small_iou_head()
    x = torch.randn(2, 17, 6, 6)
    assert all(type(c) is Conv3x3 and c.relu and not c.exact_aten for c in head.convs)
    assert conv_ops_run(head, x) == {MSRCNN_OP}
    Conv3x3.convert(head, exact_aten=True)
    assert conv_ops_run(head, x) == {ATEN_CONV}
    assert "exact_aten=True" in repr(head)


def test_constructor_is_keyword_only_and_checks_its_arguments():
    with pytest.raises(TypeError):
        MaskIoUHead(81)
    with pytest.raises(TypeError):
        MaskHead(81)
    with pytest.raises(ValueError, match="conv_dim: expected a positive int, got 0"):
        MaskIoUHead(conv_dim=0)
    with pytest.raises(ValueError, match="num_convs: expected an int >= 0, got -1"):
        MaskHead(num_convs=-1)


def test_bad_input_shape():
    head = small_iou_head()
    with pytest.raises(ValueError, match=r"x: expected a Tensor\[N, 17, 6, 6\], got shape \(2, 16, 6, 6\)"):
        head(torch.zeros(2, 16, 6, 6))
    with pytest.raises(ValueError, match=r"x: expected a Tensor\[N, 16, H, W\]"):
        MaskHead(in_channels=16, conv_dim=8, num_classes=2)(torch.zeros(2, 8, 6, 6))


def test_export_keeps_the_msrcnn_ops():
    torch.manual_seed(3)
    head = small_iou_head().eval()
    x = torch.randn(2, 17, 6, 6)
    program = torch.export.export(head, (x,))
    targets = [node.target for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count(torch.ops.msrcnn.conv3x3.default) == 4
    torch.testing.assert_close(program.module()(x), head(x))
