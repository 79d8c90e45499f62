"""3x3 stride-1 convolutions on the CPU: msrcnn::winograd_conv3x3 (Winograd F(2x2, 3x3)) against
ATen's F.conv2d (oneDNN's direct convolution: no Winograd on AVX2), side by side.

Both sides get the same channels-last float32 tensors (the model's layout; oneDNN's fastest) and
both write channels-last outputs. Cases:

* the heads: the mask head's and MaskIoU head's 256 -> 256 and 257 -> 256 convs (+ ReLU) on 100
  RoIs x 14x14 (inference: the top 100 detections);
* the backbone's and FPN's 3x3 convs (+ bias: the folded norm) at an 800x608 image: C2 at 1/4
  scale (64 ch, 152x200), C3 (128, 76x100), C4 (256, 38x50), C5 (512, 19x25);
* input gradients (the training backward: conv2d of the output gradient with the flipped,
  transposed filters) on the head and C2/C4 shapes; baseline torch.nn.grad.conv2d_input, which
  msrcnn::_conv3x3_backward_input ran before;
* the conv3x3_bias_relu op forward + backward on the MaskIoU head's first layer (backend 'aten':
  F.conv2d + relu and ATen's autograd; 'triton' on CPU: the op, Winograd forward and input
  gradient, ATen weight gradient);
* whole backbones (ResNet-FPN, torchvision-style, frozen BN folded) switched with
  use_winograd_conv3x3, forward at 1x3x608x800 (R-18) and 1x3x800x1088 (R-50).

Targets are set from runs on a 2-core AMD EPYC (AVX2 + FMA) shared with other jobs (medians):
see the report in the commit history for the numbers (1 and 2 threads). Run with
``OMP_NUM_THREADS=1`` for steadier ratios on a busy machine.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from benchmarks.conftest import BASELINE, OURS, measure
from msrcnn_fast import ops
from msrcnn_fast.model.backbone import resnet_fpn_backbone
from msrcnn_fast.ops.winograd_conv3x3 import conv3x3_input_grad

IMPLS = [BASELINE, OURS]

# name: (N, Cin, Cout, H, W, relu, target speedup)
FORWARD = {
    "head 100 RoIs 256->256 14x14 +relu": (100, 256, 256, 14, 14, True, 1.5),
    "head 100 RoIs 257->256 14x14 +relu": (100, 257, 256, 14, 14, True, 1.5),
    "C2 64->64 152x200": (1, 64, 64, 152, 200, False, 1.3),
    "C3 128->128 76x100": (1, 128, 128, 76, 100, False, 1.3),
    "C4 256->256 38x50": (1, 256, 256, 38, 50, False, 1.3),
    "C5 512->512 19x25": (1, 512, 512, 19, 25, False, 1.3),
}
# name: (N, Cin, Cout, H, W, target): the gradient of a Cin -> Cout conv's input.
INPUT_GRAD = {
    "head 100 RoIs 257->256 14x14": (100, 257, 256, 14, 14, 1.5),
    "C2 64->64 152x200": (1, 64, 64, 152, 200, 1.3),
    "C4 256->256 38x50": (1, 256, 256, 38, 50, 1.3),
}


def make_case(n, c_in, c_out, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c_out, c_in, 3, 3, generator=g) / (9 * c_in) ** 0.5
    bias = 0.1 * torch.randn(c_out, generator=g)
    return x, weight, bias


def assert_close(actual, expected, scale=1.0):
    # Winograd's float32 error is ~1e-6 of the output scale (tests/ops/test_winograd_conv3x3.py).
    torch.testing.assert_close(actual, expected, atol=1e-4 * scale, rtol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(FORWARD))
def test_forward(benchmark, case, impl):
    n, c_in, c_out, h, w, relu, target = FORWARD[case]
    x, weight, bias = make_case(n, c_in, c_out, h, w)

    def aten():
        y = F.conv2d(x, weight, bias, 1, 1)
        return torch.relu(y) if relu else y

    def ours():
        return ops.winograd_conv3x3(x, weight, bias, relu)

    fn = aten if impl == BASELINE else ours
    if impl == OURS:
        assert_close(ours(), aten())
    y = measure(benchmark, fn, impl=impl, group=f"winograd fwd: {case}", target=target)
    assert y.shape == (n, c_out, h, w) and y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(INPUT_GRAD))
def test_input_gradient(benchmark, case, impl):
    n, c_in, c_out, h, w, target = INPUT_GRAD[case]
    _, weight, _ = make_case(n, c_in, c_out, 1, 1)
    grad = torch.randn(n, c_out, h, w).contiguous(memory_format=torch.channels_last)

    def aten():
        return torch.nn.grad.conv2d_input((n, c_in, h, w), weight, grad, 1, 1)

    def ours():
        return conv3x3_input_grad(grad, weight)

    fn = aten if impl == BASELINE else ours
    if impl == OURS:
        assert_close(ours(), aten())
    result = measure(benchmark, fn, impl=impl, group=f"winograd input grad: {case}", target=target)
    assert result.shape == (n, c_in, h, w)


@pytest.mark.parametrize("impl", IMPLS)
def test_conv3x3_op_forward_backward(benchmark, impl):
    """One MaskIoU-head layer in training: 100 RoIs, 257 -> 256, forward + all three gradients."""
    x, weight, bias = make_case(100, 257, 256, 14, 14)
    grad = torch.randn(100, 256, 14, 14).contiguous(memory_format=torch.channels_last)
    backend = "aten" if impl == BASELINE else "triton"  # 'triton' on CPU: the msrcnn op (Winograd inside)
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]

    def step():
        y = ops.conv3x3_bias_relu(*leaves, 1, backend=backend)
        return torch.autograd.grad(y, leaves, grad)

    measure(
        benchmark,
        step,
        impl=impl,
        group="conv3x3_bias_relu fwd+bwd: head 100 RoIs 257->256 14x14",
        target=1.3,
    )


BACKBONES = {
    # name: (depth, H, W, target)
    "R-18-FPN 608x800": (18, 608, 800, 1.3),
    "R-50-FPN 800x1088": (50, 800, 1088, 1.15),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(BACKBONES))
def test_backbone_forward(benchmark, case, impl):
    """resnet_fpn_backbone (eval, channels-last), and the same with use_winograd_conv3x3: the
    ResNet's 3x3 stride-1 convs and the FPN's 3x3 output convs switched."""
    depth, h, w, target = BACKBONES[case]
    torch.manual_seed(0)
    model = resnet_fpn_backbone(depth=depth).eval().to(memory_format=torch.channels_last)
    if impl == OURS:
        baseline = copy.deepcopy(model)
        assert len(ops.use_winograd_conv3x3(model)) > 0
    x = torch.randn(1, 3, h, w).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad():
            return model(x)

    if impl == OURS:
        with torch.no_grad():
            expected = baseline(x)
        for key, value in forward().items():
            assert_close(value, expected[key], scale=expected[key].abs().max().item())
    measure(benchmark, forward, impl=impl, group=f"backbone fwd: {case}", target=target, rounds=3)
