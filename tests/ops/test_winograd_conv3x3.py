"""msrcnn::winograd_conv3x3 (Winograd F(2x2, 3x3) on the CPU) against F.conv2d (+ ReLU) in float64.

Tolerance (float32). Winograd computes each output from transformed terms: |B^T d B| <= 4 max|d|,
|G g G^T| <= 9/4 max|g|, and A^T m A adds up to 9 channel sums, so its rounding errors scale
with terms up to ~9x the direct sum's; each channel sum has Cin terms (the direct one 9 Cin).
Measured against float64 on random data (x ~ N(0, 1), w ~ N(0, 1/(9 Cin))), the largest error
over a map is 10-80 u * scale, u = 2^-24 and scale = sqrt(9 Cin) rms(x) rms(w) (the RMS of the
outputs): 11 u at Cin = 3, 55 u at Cin = 257, 80 u at Cin = 512 over 250k outputs, i.e. 1e-6
of the output scale, and 1.5-4x *below* oneDNN's float32 error on the same data (oneDNN
accumulates 9 Cin terms per output). We assert |error| <= 256 u * scale (1.5e-5 of the output
scale): 3x above the worst case seen, and 5 orders of magnitude below what a wrong tap, channel,
pixel or border gives (O(scale)).

float64 runs ATen's convolution (asserted at 1e-12). float16/bfloat16 run the float32 kernels on
the rounded values and round once: compared with the float32 reference of the same values at 2u
of the type, relative, plus the float32 tolerance.
"""

import importlib

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from msrcnn_fast import ops
from msrcnn_fast.model.backbone import fold_frozen_batchnorm
from tests.compiled import assert_compiled_matches_eager

wino = importlib.import_module("msrcnn_fast.ops.winograd_conv3x3")  # (ops.winograd_conv3x3 is the function)

U32 = 2.0**-24
TOL_U = 256
OP = torch.ops.msrcnn.winograd_conv3x3


def make_case(n, c_in, c_out, h, w, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g)
    weight = torch.randn(c_out, c_in, 3, 3, generator=g) / (9 * max(c_in, 1)) ** 0.5
    bias = 0.1 * torch.randn(c_out, generator=g)
    return x.to(dtype), weight.to(dtype), bias.to(dtype)


def reference(x, weight, bias, relu):
    y = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), 1, 1)
    return torch.relu(y) if relu else y


def output_scale(x, weight):
    """sqrt(9 Cin) rms(x) rms(w): the RMS of the outputs of random data (see the module docstring)."""
    c_in = x.size(1)
    return (9 * c_in) ** 0.5 * x.double().square().mean().sqrt().item() * weight.double().square().mean().sqrt().item()


def assert_close_winograd(actual, expected, x, weight):
    assert actual.shape == expected.shape
    if expected.numel() == 0:
        return
    error = (actual.double() - expected).abs().max().item()
    bound = TOL_U * U32 * output_scale(x, weight)
    assert error <= bound, f"max error {error:.3g} > {bound:.3g} ({error / (U32 * output_scale(x, weight)):.0f} u)"


def assert_channels_last(t):
    n, c, h, w = t.shape
    assert t.stride() == (h * w * c, 1, w * c, c), t.stride()


def layout(x, kind):
    """x (NCHW contiguous) in another layout, same values."""
    if kind == "nchw":
        return x
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "nhwc_slice":  # channels contiguous, pixels further apart: read in place, not copied
        wide = torch.zeros(x.size(0), x.size(1) + 3, x.size(2), x.size(3)).contiguous(memory_format=torch.channels_last)
        wide[:, 1 : 1 + x.size(1)] = x
        view = wide[:, 1 : 1 + x.size(1)]
        assert view.stride(1) == 1 and not view.is_contiguous(memory_format=torch.channels_last)
        return view
    if kind == "strided":  # no dense layout: every other column of a wider map
        wide = torch.zeros(x.size(0), x.size(1), x.size(2), 2 * x.size(3))
        wide[..., ::2] = x
        return wide[..., ::2]
    raise ValueError(kind)


SHAPES = [
    # n, c_in, c_out, h, w
    (2, 5, 3, 7, 5),  # odd map: partial tiles at the bottom and right borders
    (3, 8, 17, 1, 1),  # 1x1 map: every tap but the centre one is padding; Cout not a panel multiple
    (1, 257, 256, 14, 14),  # the MaskIoU head's first conv (256 + 1 channels)
    (4, 16, 32, 9, 12),
    (2, 3, 8, 2, 1),
    (1, 33, 20, 6, 3),  # Cin with a vector tail (33 = 4 x 8 + 1), Cout = 16 + 4
    (2, 24, 40, 1, 7),
    (1, 300, 24, 5, 4),  # Cin > 256: two K blocks of the GEMM
]


@pytest.mark.parametrize("kind", ["nchw", "channels_last", "nhwc_slice", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_float64_reference(cpu_capability, shape, kind):
    n, c_in, c_out, h, w = shape
    x, weight, bias = make_case(n, c_in, c_out, h, w, seed=sum(shape))
    for b, relu in [(bias, True), (None, False), (bias, False)]:
        actual = wino.winograd_conv3x3(layout(x, kind), weight, b, relu)
        assert actual.dtype == torch.float32
        assert_channels_last(actual)
        assert_close_winograd(actual, reference(x, weight, b, relu), x, weight)


def test_error_is_small_relative_to_the_output_scale(cpu_capability):
    """The head's shape with more RoIs: the measured error (docstring) stays well inside the bound."""
    x, weight, bias = make_case(16, 256, 256, 14, 14, seed=11)
    actual = wino.winograd_conv3x3(x.contiguous(memory_format=torch.channels_last), weight, bias)
    error = (actual.double() - reference(x, weight, bias, False)).abs().max().item()
    assert error < 100 * U32 * output_scale(x, weight)


def test_weight_layouts_and_large_values(cpu_capability):
    """Transposed and non-contiguous weights read in place or copied; results scale linearly."""
    x, weight, bias = make_case(2, 12, 9, 5, 6, seed=3)
    expected = reference(x, weight, bias, True)
    transposed = weight.transpose(0, 1).contiguous().transpose(0, 1)  # filters contiguous, Cout/Cin swapped
    permuted = weight.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # filters not contiguous
    for w in (transposed, permuted):
        assert_close_winograd(wino.winograd_conv3x3(x, w, bias, True), expected, x, weight)
    big = 1e20 * x
    assert_close_winograd(wino.winograd_conv3x3(big, weight, None), reference(big, weight, None, False), big, weight)


def test_empty_inputs(cpu_capability):
    x, weight, bias = make_case(0, 17, 16, 4, 4)
    y = wino.winograd_conv3x3(x, weight, bias, True)
    assert y.shape == (0, 16, 4, 4)
    for shape in [(2, 17, 0, 5), (2, 17, 3, 0)]:
        assert wino.winograd_conv3x3(torch.zeros(shape), weight, bias).shape == (2, 16, *shape[2:])
    # No input channels: the bias alone (ATen's convolution returns no channels there).
    x, weight, bias = make_case(2, 0, 5, 3, 4)
    for dtype in (torch.float32, torch.float64):
        y = wino.winograd_conv3x3(x.to(dtype), weight.to(dtype), bias.to(dtype), True)
        assert_channels_last(y)
        torch.testing.assert_close(y, torch.relu(bias.to(dtype)).reshape(1, 5, 1, 1).expand(2, 5, 3, 4))


def test_single_channel_output_is_channels_last():
    """C == 1 is both NCHW- and NHWC-contiguous: every path returns the same strides as the fake."""
    x, weight, bias = make_case(2, 1, 1, 3, 5)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        y = wino.winograd_conv3x3(x.to(dtype), weight.to(dtype), bias.to(dtype))
        assert y.stride() == (15, 1, 5, 1), (dtype, y.stride())


def test_float64_runs_aten():
    x, weight, bias = make_case(2, 7, 6, 5, 3, dtype=torch.float64)
    y = wino.winograd_conv3x3(x, weight, bias, True)
    assert y.dtype == torch.float64
    assert_channels_last(y)
    torch.testing.assert_close(y, reference(x, weight, bias, True), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype,eps", [(torch.float16, 2**-11), (torch.bfloat16, 2**-8)])
def test_half_types_compute_in_float32(cpu_capability, dtype, eps):
    x, weight, bias = make_case(3, 19, 10, 6, 5, dtype=dtype)
    y = wino.winograd_conv3x3(x, weight, bias, True)
    assert y.dtype == dtype
    assert_channels_last(y)
    expected = reference(x.float(), weight.float(), bias.float(), True)
    atol = TOL_U * U32 * output_scale(x, weight)
    torch.testing.assert_close(y.double(), expected, atol=atol, rtol=2 * eps)


def test_capabilities_agree():
    """The DEFAULT (baseline x86-64) and AVX2 builds compute the same sums up to FMA rounding."""
    from msrcnn_fast import _C

    if _C.max_cpu_capability() != "avx2":
        pytest.skip("needs AVX2")
    x, weight, bias = make_case(3, 40, 24, 7, 9, seed=5)
    before = _C.cpu_capability()
    try:
        outputs = []
        for name in ("default", "avx2"):
            _C.set_cpu_capability(name)
            outputs.append(wino.winograd_conv3x3(x, weight, bias, True))
    finally:
        _C.set_cpu_capability(before)
    torch.testing.assert_close(outputs[0], outputs[1], atol=TOL_U * U32 * output_scale(x, weight), rtol=0)


# --- autograd ------------------------------------------------------------------------------------


def test_gradcheck_float64():
    """The autograd formula (float64 runs ATen inside, so gradcheck's finite differences are exact
    enough); the float32 Winograd gradients are checked below."""
    x, weight, bias = make_case(2, 4, 3, 5, 4, dtype=torch.float64)
    args = [t.requires_grad_() for t in (x, weight, bias)]
    assert torch.autograd.gradcheck(lambda a, b, c: wino.winograd_conv3x3(a, b, c, True), args)
    assert torch.autograd.gradcheck(lambda a, b: wino.winograd_conv3x3(a, b, None, False), args[:2])


@pytest.mark.parametrize("relu", [True, False])
def test_float32_gradients_match_float64(cpu_capability, relu):
    x, weight, bias = make_case(3, 21, 18, 7, 6, seed=9)
    grad = torch.randn(3, 18, 7, 6, generator=torch.Generator().manual_seed(1))
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    wino.winograd_conv3x3(*leaves, relu).backward(grad)
    ref = [t.double().requires_grad_() for t in (x, weight, bias)]
    reference(*ref, relu).backward(grad.double())
    # The input gradient is itself a Winograd convolution of grad (RMS 1) with the flipped filters.
    assert_close_winograd(leaves[0].grad, ref[0].grad, grad, weight.transpose(0, 1))
    # Weight and bias gradients are ATen's float32 sums over N H W (= 126) pixels.
    torch.testing.assert_close(leaves[1].grad.double(), ref[1].grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(leaves[2].grad.double(), ref[2].grad, atol=1e-5, rtol=1e-5)


def test_input_gradient_helper(cpu_capability):
    x, weight, _ = make_case(2, 257, 16, 5, 7, seed=2)
    grad = torch.randn(2, 16, 5, 7, generator=torch.Generator().manual_seed(3))
    expected = torch.nn.grad.conv2d_input(x.shape, weight.double(), grad.double(), 1, 1)
    actual = wino.conv3x3_input_grad(grad, weight)
    assert_channels_last(actual)
    assert_close_winograd(actual, expected, grad, weight.transpose(0, 1))


# --- registration, compile ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    x, weight, bias = make_case(2, 6, 5, 5, 3, dtype=dtype)
    cl = x.contiguous(memory_format=torch.channels_last)
    for args in [
        (x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_(), True),
        (cl, weight.detach(), None, False),
        (torch.zeros(0, 6, 2, 2, dtype=dtype), weight.detach(), bias.detach(), True),
        (torch.randn(2, 1, 1, 1, dtype=dtype), torch.randn(1, 1, 3, 3, dtype=dtype), None, True),
    ]:
        torch.library.opcheck(OP.default, args)


def test_torch_compile_fullgraph():
    conv = torch.nn.Conv2d(6, 5, 3, padding=1)
    wino.use_winograd_conv3x3(conv)

    def fn(x):
        return wino.winograd_conv3x3(x, conv.weight, conv.bias, True) + conv(x)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    assert_compiled_matches_eager(fn, compiled, x)


def test_flop_count_is_the_convolution():
    x, weight, bias = make_case(2, 6, 5, 5, 3)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        wino.winograd_conv3x3(x, weight, bias)
    assert counter.get_total_flops() == 2 * 2 * 6 * 5 * 9 * 15


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 1, 1), None), ValueError, r"expected weight \[Cout, 4, 3, 3\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 3, 3, 3), None), ValueError, r"expected weight \[Cout, 4, 3, 3\]"),
        ((torch.zeros(4, 5, 5), torch.zeros(8, 4, 3, 3), None), ValueError, r"expected input \[N, Cin, H, W\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3), None), ValueError, "expected weight"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3), torch.zeros(7)), ValueError, r"expected bias \[8\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3).double(), None), TypeError, "weight of the input's dtype"),
        (
            (torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3), torch.zeros(8).half()),
            TypeError,
            "bias of the input's dtype",
        ),
        (
            (torch.zeros(2, 4, 5, 5, dtype=torch.int32), torch.zeros(8, 4, 3, 3, dtype=torch.int32), None),
            TypeError,
            "floating-point",
        ),
        # (the meta weight sends the call to the fake kernel, which checks as the C++ one does)
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3, device="meta"), None), ValueError, "same device"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        OP(*args, False)


# --- nn.Conv2d modules and the conv3x3 op --------------------------------------------------------


def test_winograd_conv2d_module():
    conv = ops.WinogradConv2d(6, 4)
    plain = torch.nn.Conv2d(6, 4, 3, padding=1)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 5, 7)
    y = conv(x)
    assert_channels_last(y)
    assert_close_winograd(y, reference(x, conv.weight.detach(), conv.bias.detach(), False), x, conv.weight)
    conv.double(), plain.double()
    torch.testing.assert_close(conv(x.double()), plain(x.double()), atol=1e-12, rtol=0)  # float64: nn.Conv2d


def test_use_winograd_conv3x3_on_a_resnet():
    """The backbone's wiring: after fold_frozen_batchnorm, every 3x3 stride-1 conv (conv + folded
    norm included) is switched; stems, 1x1 and stride-2 convs are not; outputs and state_dict are
    unchanged; training still backpropagates."""
    torch.manual_seed(0)
    body = torchvision.models.resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    for bn in body.modules():
        if isinstance(bn, FrozenBatchNorm2d):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2)
    fold_frozen_batchnorm(body)
    body.fc = torch.nn.Identity()
    x = torch.randn(1, 3, 64, 96)
    expected = body(x).detach()
    state = {k: v.clone() for k, v in body.state_dict().items()}
    switched = ops.use_winograd_conv3x3(body)
    # resnet18: 8 blocks x 2 convs, less the 3 stride-2 first convs of layers 2-4.
    assert len(switched) == 13 and "layer1.0.conv1" in switched and "layer2.0.conv1" not in switched
    assert "conv1" not in switched and not any("downsample" in name for name in switched)
    assert all(isinstance(body.get_submodule(name), wino._WinogradConvMixin) for name in switched)
    assert type(body.layer1[0].conv1).__name__ == "WinogradConvFrozenBN"
    assert ops.use_winograd_conv3x3(body) == []  # idempotent
    assert body.state_dict().keys() == state.keys()
    assert all(torch.equal(body.state_dict()[k], v) for k, v in state.items())
    actual = body(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)  # 8 blocks of float32 convs
    body.layer4[1].conv2.weight.requires_grad_(True)
    actual.sum().backward()
    assert body.layer4[1].conv2.weight.grad is not None


def test_use_winograd_conv3x3_skips_modules_that_do_not_compute_through_conv_forward():
    model = torch.nn.Sequential(
        ops.Conv3x3ReLU(4, 4), torch.nn.Conv2d(4, 4, 3, padding=1, dilation=1), torch.nn.Conv2d(4, 4, 3, padding=2)
    )
    assert ops.use_winograd_conv3x3(model) == ["1"]
    assert type(model[1]) is ops.WinogradConv2d


def test_conv3x3_op_runs_winograd_on_cpu_float32_stride_1(monkeypatch):
    """msrcnn::conv3x3_bias_relu's CPU path: Winograd at stride 1 (forward and input gradient),
    ATen at stride 2 and in float64."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, weight, bias = make_case(2, 9, 8, 6, 5, seed=4)
    grad = torch.randn(2, 8, 6, 5, generator=torch.Generator().manual_seed(8))

    def winograd_calls(stride, dtype=torch.float32):
        leaves = [t.to(dtype, copy=True).requires_grad_() for t in (x, weight, bias)]
        with torch.profiler.profile() as prof:
            y = ops.conv3x3_bias_relu(*leaves, stride, backend="triton")
            y.backward(torch.randn(y.shape, dtype=dtype))
        return sum(e.name == "msrcnn::winograd_conv3x3" for e in prof.events()), y, leaves

    calls, y, leaves = winograd_calls(1)
    assert calls == 2  # forward and input gradient
    assert_channels_last(y)
    assert winograd_calls(2)[0] == 0
    assert winograd_calls(1, torch.float64)[0] == 0
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    ops.conv3x3_bias_relu(*leaves, 1, backend="triton").backward(grad)
    ref = [t.double().requires_grad_() for t in (x, weight, bias)]
    y_ref = reference(*ref, True)
    y_ref.backward(grad.double())
    assert_close_winograd(ops.conv3x3_bias_relu(x, weight, bias, 1, backend="triton"), y_ref, x, weight)
    assert_close_winograd(leaves[0].grad, ref[0].grad, grad, weight.transpose(0, 1))
    torch.library.opcheck(torch.ops.msrcnn.conv3x3_bias_relu.default, (x, weight, bias, 1))
    torch.library.opcheck(torch.ops.msrcnn._conv3x3_backward_input.default, (grad, weight, 1, 6, 5))
