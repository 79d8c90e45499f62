"""msrcnn::conv3x3 on the CPU (its C++ kernels), its backward ops, ops.conv3x3 and the Conv3x3
module, against F.conv2d (+ ReLU) in float64.

The CPU kernels: Winograd F(2x2, 3x3) at stride 1 in float32 (float16 and bfloat16 computed in
float32, rounded once), ATen's convolution at stride 2 and in float64. The backward ops: the
input gradient at stride 1 runs the same Winograd kernels (the convolution of the output
gradient with the flipped, transposed filters), ATen's otherwise; the weight gradient at stride
1 runs Winograd backwards (the adjoint transforms around a batched GEMM over tiles), ATen's
otherwise.
(The CUDA kernels, Triton, are tested under the Triton interpreter in tests/kernels/test_conv3x3.py.)

Tolerance (float32 Winograd). Winograd computes each output from transformed terms:
|B^T d B| <= 4 max|d|, |G g G^T| <= 9/4 max|g|, and A^T m A adds up to 9 channel sums, so its
rounding errors scale with terms up to ~9x the direct sum's; each channel sum has Cin terms (the
direct one 9 Cin). Measured against float64 on random data (x ~ N(0, 1), w ~ N(0, 1/(9 Cin))),
the largest error over a map is 10-80 u * scale, u = 2^-24 and scale = sqrt(9 Cin) rms(x) rms(w)
(the RMS of the outputs): 11 u at Cin = 3, 55 u at Cin = 257, 80 u at Cin = 512 over 250k
outputs, i.e. 1e-6 of the output scale, and 1.5-4x *below* oneDNN's float32 error on the same
data (oneDNN accumulates 9 Cin terms per output). We assert |error| <= 256 u * scale (1.5e-5 of
the output scale): 3x above the worst case seen, and 5 orders of magnitude below what a wrong
tap, channel, pixel or border gives (O(scale)).

F(4x4, 3x3) and F(7x7, 3x3) have larger transformed terms (constants up to 8 and 4096 in A^T):
their measured errors reach 1.4e3 u and 1.2e4 u * scale, asserted below 4096 u and 32768 u.

float64 and stride 2 run ATen's convolution: asserted bit for bit against F.conv2d on the same
(channels-last) input. float16/bfloat16 run the float32 kernels on the rounded values and round
once: compared with the float32 reference of the same values at 2u of the type, relative, plus
the float32 tolerance.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from msrcnn_fast import _C, ops
from msrcnn_fast.model import msrcnn_resnet18_fpn
from msrcnn_fast.model.backbone import resnet_fpn_backbone
from msrcnn_fast.model.batchnorm_folding import FrozenBatchNormConv2d, FrozenBatchNormConv3x3, fold_frozen_batchnorm
from msrcnn_fast.ops import Conv3x3
from tests.compiled import assert_compiled_matches_eager

U32 = 2.0**-24
TOL_U = 256  # F(2x2, 3x3)
TOL_U_TILE = {2: TOL_U, 4: 4096, 7: 32768}
OP = torch.ops.msrcnn.conv3x3
BACKWARD_INPUT = torch.ops.msrcnn._conv3x3_backward_input
BACKWARD_WEIGHT = torch.ops.msrcnn._conv3x3_backward_weight


def make_case(n, c_in, c_out, h, w, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g)
    weight = torch.randn(c_out, c_in, 3, 3, generator=g) / (9 * max(c_in, 1)) ** 0.5
    bias = 0.1 * torch.randn(c_out, generator=g)
    return x.to(dtype), weight.to(dtype), bias.to(dtype)


def output_size(size, stride):
    return (size - 1) // stride + 1


def reference(x, weight, bias, relu, stride=1):
    y = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), stride, 1)
    return torch.relu(y) if relu else y


def aten(x, weight, bias, relu, stride=1):
    """What the ATen paths compute: F.conv2d on the channels-last input (+ ReLU)."""
    y = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias, stride, 1)
    return torch.relu(y) if relu else y


def output_scale(x, weight):
    """sqrt(9 Cin) rms(x) rms(w): the RMS of the outputs of random data (see the module docstring)."""
    c_in = x.size(1)
    return (9 * c_in) ** 0.5 * x.double().square().mean().sqrt().item() * weight.double().square().mean().sqrt().item()


@pytest.fixture(autouse=True)
def _winograd_f2x2():
    """Every test here runs F(2x2, 3x3) unless it takes `tile`; the map-size choice afterwards."""
    _C._set_winograd_tile(2)
    yield
    _C._set_winograd_tile(0)


@pytest.fixture(params=[2, 4, 7], ids=["F2x2", "F4x4", "F7x7"])
def tile(request):
    """Runs a test with each Winograd algorithm forced: F(2x2, 3x3), F(4x4, 3x3), F(7x7, 3x3)."""
    _C._set_winograd_tile(request.param)
    return request.param


def assert_close_winograd(actual, expected, x, weight, tile=2):
    assert actual.shape == expected.shape
    if expected.numel() == 0:
        return
    error = (actual.double() - expected).abs().max().item()
    bound = TOL_U_TILE[tile] * U32 * output_scale(x, weight)
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


def profiled_ops(fn):
    """The names of the ops that ran in fn() (msrcnn's and ATen's, C++ callers included)."""
    with torch.profiler.profile() as prof:
        fn()
    return {e.name for e in prof.events()}


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


# --- the forward: Winograd at stride 1 ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nchw", "channels_last", "nhwc_slice", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_float64_reference(cpu_capability, tile, shape, kind):
    n, c_in, c_out, h, w = shape
    x, weight, bias = make_case(n, c_in, c_out, h, w, seed=sum(shape))
    for b, relu in [(bias, True), (None, False), (bias, False), (None, True)]:
        actual = ops.conv3x3(layout(x, kind), weight, b, relu=relu)
        assert actual.dtype == torch.float32
        assert_channels_last(actual)
        assert_close_winograd(actual, reference(x, weight, b, relu), x, weight, tile)


def test_relu_is_applied_only_when_asked(cpu_capability):
    """relu=False keeps the negative outputs (about half of them here), relu=True zeroes them."""
    x, weight, bias = make_case(2, 9, 8, 6, 5, seed=12)
    plain = OP(x, weight, bias, 1, False)
    assert 0.3 < (plain < 0).double().mean() < 0.7
    assert_close_winograd(plain, reference(x, weight, bias, False), x, weight)
    torch.testing.assert_close(OP(x, weight, bias, 1, True), torch.relu(plain), atol=0, rtol=0)


def test_error_is_small_relative_to_the_output_scale(cpu_capability):
    """The head's shape with more RoIs: the measured error (docstring) stays well inside the bound."""
    x, weight, bias = make_case(16, 256, 256, 14, 14, seed=11)
    actual = ops.conv3x3(x.contiguous(memory_format=torch.channels_last), weight, bias)
    error = (actual.double() - reference(x, weight, bias, False)).abs().max().item()
    assert error < 100 * U32 * output_scale(x, weight)


def test_weight_layouts_and_large_values(cpu_capability, tile):
    """Transposed, channels-last and other weight strides, read in place; results scale linearly."""
    x, weight, bias = make_case(2, 12, 9, 5, 6, seed=3)
    expected = reference(x, weight, bias, True)
    transposed = weight.transpose(0, 1).contiguous().transpose(0, 1)  # filters contiguous, Cout/Cin swapped
    permuted = weight.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # filters not contiguous
    channels_last = weight.contiguous(memory_format=torch.channels_last)
    for w in (transposed, permuted, channels_last):
        assert_close_winograd(ops.conv3x3(x, w, bias, relu=True), expected, x, weight, tile)
    big = 1e20 * x
    assert_close_winograd(ops.conv3x3(big, weight), reference(big, weight, None, False), big, weight, tile)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "posinf", "neginf"])
def test_non_finite_input_stays_in_its_reach(cpu_capability, tile, value, relu):
    """A non-finite input value affects only the outputs whose 3x3 window holds it, widened to
    their Winograd output tiles: NaN stays NaN (also through the ReLU), an infinity gives
    non-finite outputs (or zeros after the ReLU); the other outputs are those of the finite input."""
    x, weight, bias = make_case(2, 6, 5, 11, 10, seed=13)
    clean = x.clone()
    x[1, 2, 5, 4] = value
    got = OP(x, weight, bias, 1, relu)
    direct = torch.zeros(2, 11, 10, dtype=torch.bool)
    direct[1, 4:7, 3:6] = True  # the outputs whose window holds (5, 4)
    tiles = torch.zeros_like(direct)
    if tile == 2:
        tiles[1, 4:8, 2:6] = True  # their 2x2 output tiles (rows 4-7, columns 2-5)
    elif tile == 4:
        tiles[1, 4:8, 0:8] = True  # their 4x4 output tiles (rows 4-7, columns 0-7)
    else:
        tiles[1, 0:7, 0:7] = True  # their 7x7 output tile (rows 0-6, columns 0-6)
    outside = ~tiles[:, None].expand_as(got)
    assert_close_winograd(got[outside], reference(clean, weight, bias, relu)[outside], clean, weight, tile)
    reached = got[direct[:, None].expand_as(got)]
    if value != value:
        assert reached.isnan().all()
    elif not relu:
        assert not reached.isfinite().any()
    else:
        assert ((reached == 0) | ~reached.isfinite()).all()


def test_empty_inputs():
    x, weight, bias = make_case(0, 17, 16, 4, 4)
    for stride in (1, 2):
        y = ops.conv3x3(x, weight, bias, stride, relu=True)
        assert y.shape == (0, 16, output_size(4, stride), output_size(4, stride))
        for shape in [(2, 17, 0, 5), (2, 17, 3, 0)]:
            y = ops.conv3x3(torch.zeros(shape), weight, bias, stride)
            assert y.shape == (2, 16, *(output_size(s, stride) for s in shape[2:]))
    assert ops.conv3x3(torch.zeros(2, 17, 4, 4), weight[:0], bias[:0]).shape == (2, 0, 4, 4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_no_input_channels_give_the_bias(dtype, stride):
    """Cin = 0: relu?(bias) broadcast (ATen's convolution returns no channels there), zeros
    without a bias."""
    x, weight, bias = make_case(2, 0, 5, 3, 4, dtype=dtype)
    ho, wo = output_size(3, stride), output_size(4, stride)
    for relu in (False, True):
        y = ops.conv3x3(x, weight, bias, stride, relu=relu)
        assert_channels_last(y)
        expected = (torch.relu(bias) if relu else bias).reshape(1, 5, 1, 1).expand(2, 5, ho, wo)
        torch.testing.assert_close(y, expected, atol=0, rtol=0)
    assert not ops.conv3x3(x, weight, None, stride, relu=True).any()


@pytest.mark.parametrize("stride", [1, 2])
def test_single_channel_output_is_channels_last(stride):
    """C == 1 is both NCHW- and NHWC-contiguous: every path returns the same strides as the fake."""
    x, weight, bias = make_case(2, 1, 1, 3, 5)
    ho, wo = output_size(3, stride), output_size(5, stride)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        y = ops.conv3x3(x.to(dtype), weight.to(dtype), bias.to(dtype), stride)
        assert y.stride() == (ho * wo, 1, wo, 1), (dtype, y.stride())


@pytest.mark.parametrize("dtype,eps", [(torch.float16, 2**-11), (torch.bfloat16, 2**-8)])
def test_half_types_compute_in_float32(cpu_capability, dtype, eps):
    x, weight, bias = make_case(3, 19, 10, 6, 5, dtype=dtype)
    for relu in (False, True):
        y = ops.conv3x3(x, weight, bias, relu=relu)
        assert y.dtype == dtype
        assert_channels_last(y)
        expected = reference(x.float(), weight.float(), bias.float(), relu)
        atol = TOL_U * U32 * output_scale(x, weight)
        torch.testing.assert_close(y.double(), expected, atol=atol, rtol=2 * eps)


@pytest.mark.parametrize("capability", ["avx2", "avx512"])
def test_capabilities_agree(capability):
    """The AVX2 and AVX512 builds compute the same sums as the DEFAULT (baseline x86-64) build
    up to FMA rounding (each where this CPU can run it)."""
    from msrcnn_fast import _C
    from tests.conftest import skip_unless_runnable

    skip_unless_runnable(capability)
    x, weight, bias = make_case(3, 40, 24, 7, 9, seed=5)
    before = _C.cpu_capability()
    try:
        outputs = []
        for name in ("default", capability):
            _C.set_cpu_capability(name)
            outputs.append(ops.conv3x3(x, weight, bias, relu=True))
    finally:
        _C.set_cpu_capability(before)
    torch.testing.assert_close(outputs[0], outputs[1], atol=TOL_U * U32 * output_scale(x, weight), rtol=0)


@pytest.mark.parametrize(
    "shape,chosen",
    [
        ((2, 64, 64, 32, 32), 4),
        ((1, 128, 96, 40, 21), 4),
        ((16, 64, 64, 14, 14), 7),
        ((16, 257, 256, 14, 14), 7),
        ((16, 64, 64, 13, 14), 7),
        ((15, 64, 64, 14, 14), 4),
        ((1, 256, 256, 16, 14), 4),
        ((64, 64, 64, 7, 7), 7),
        ((64, 256, 512, 7, 7), 7),
        ((63, 64, 64, 7, 7), 2),
        ((64, 64, 64, 6, 6), 7),
        ((64, 64, 64, 10, 10), 2),
        ((1, 64, 64, 40, 13), 2),
        ((64, 512, 512, 7, 7), 2),
        ((1, 512, 512, 32, 32), 2),
        ((1, 257, 256, 20, 20), 2),
    ],
    ids=str,
)
def test_tile_is_chosen_by_map_size_and_channels(shape, chosen):
    """Unforced, F(7x7, 3x3) runs on maps whose sides are 6, 7, 13 or 14 (its tiles cover them
    with at most one to spare) with at most 512 x 256 channels and at least 64 tiles; F(4x4, 3x3)
    on maps of 14 x 14 and more with at most 256 x 256 channels; F(2x2, 3x3) elsewhere: the
    forward and both gradients equal those of the forced choice bit for bit."""
    n, c_in, c_out, h, w = shape
    x, weight, bias = make_case(n, c_in, c_out, h, w, seed=21)
    x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(n, c_out, h, w).contiguous(memory_format=torch.channels_last)

    def run():
        return OP(x, weight, bias, 1, True), BACKWARD_INPUT(grad, weight, 1, h, w), BACKWARD_WEIGHT(grad, x, 1)[0]

    _C._set_winograd_tile(0)
    auto = run()
    for forced in (2, 4, 7):
        _C._set_winograd_tile(forced)
        same = [torch.equal(a, b) for a, b in zip(auto, run())]
        assert same == [forced == chosen] * 3, (forced, same)


@pytest.mark.parametrize("value", [1, 3, 8, -2])
def test_forcing_an_unknown_tile_raises(value):
    with pytest.raises(ValueError, match="Winograd tile must be 0 .by map size., 2, 4 or 7"):
        _C._set_winograd_tile(value)
    assert _C._winograd_tile() == 2  # unchanged


# --- ATen's paths: stride 2 and float64 -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 3, 7, 5), (1, 17, 16, 8, 8), (3, 8, 17, 1, 2)], ids=str)
def test_stride_2_is_aten(shape, relu, kind):
    n, c_in, c_out, h, w = shape
    x, weight, bias = make_case(n, c_in, c_out, h, w, seed=sum(shape))
    y = ops.conv3x3(layout(x, kind), weight, bias, 2, relu=relu)
    assert y.shape == (n, c_out, output_size(h, 2), output_size(w, 2))
    assert_channels_last(y)
    torch.testing.assert_close(y, aten(x, weight, bias, relu, 2), atol=0, rtol=0)
    torch.testing.assert_close(y.double(), reference(x, weight, bias, relu, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_float64_is_aten(stride):
    x, weight, bias = make_case(2, 7, 6, 5, 3, dtype=torch.float64)
    for b, relu in [(bias, True), (None, False)]:
        y = ops.conv3x3(x, weight, b, stride, relu=relu)
        assert y.dtype == torch.float64
        assert_channels_last(y)
        torch.testing.assert_close(y, aten(x, weight, b, relu, stride), atol=0, rtol=0)


@pytest.mark.parametrize(
    "stride,dtype,aten_forward",
    [(1, torch.float32, False), (1, torch.bfloat16, False), (2, torch.float32, True), (1, torch.float64, True)],
)
def test_kernel_choice(monkeypatch, stride, dtype, aten_forward):
    """Which CPU kernel runs: ATen's convolution inside msrcnn::conv3x3 only at stride 2 and in
    float64; the input gradient (frozen weight) and the weight gradient (frozen input) likewise:
    Winograd (its batched GEMM is aten::bmm) or ATen's convolution_backward.
    TRITON_INTERPRET does not matter: CPU tensors always take the C++ kernels."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x, weight, bias = make_case(2, 9, 8, 6, 5, dtype=dtype, seed=4)
    leaf = x.clone().requires_grad_()
    names = profiled_ops(lambda: ops.conv3x3(leaf, weight, bias, stride, relu=True).sum().backward())
    assert {"msrcnn::conv3x3", "msrcnn::_conv3x3_backward_input"} <= names
    assert "msrcnn::_conv3x3_backward_weight" not in names  # frozen weight and bias
    assert ("aten::convolution" in names) == aten_forward
    assert ("aten::convolution_backward" in names) == aten_forward
    leaf_weight = weight.clone().requires_grad_()
    names = profiled_ops(lambda: ops.conv3x3(x, leaf_weight, bias, stride, relu=True).sum().backward())
    assert "msrcnn::_conv3x3_backward_weight" in names and "msrcnn::_conv3x3_backward_input" not in names
    assert ("aten::convolution_backward" in names) == aten_forward
    assert ("aten::bmm" in names) != aten_forward


# --- autograd and the backward ops ----------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcheck_float64(stride):
    """The autograd formula (float64 runs ATen inside, so gradcheck's finite differences are exact
    enough); the float32 Winograd gradients are checked below."""
    x, weight, bias = make_case(2, 4, 3, 5, 4, dtype=torch.float64)
    args = [t.requires_grad_() for t in (x, weight, bias)]
    assert torch.autograd.gradcheck(lambda a, b, c: ops.conv3x3(a, b, c, stride, relu=True), args)
    assert torch.autograd.gradcheck(lambda a, b: ops.conv3x3(a, b, None, stride), args[:2])


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("relu", [True, False])
def test_float32_gradients_match_float64(cpu_capability, tile, relu, stride):
    x, weight, bias = make_case(3, 21, 18, 7, 6, seed=9)
    grad = torch.randn(
        3, 18, output_size(7, stride), output_size(6, stride), generator=torch.Generator().manual_seed(1)
    )
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    grad_input, grad_weight, grad_bias = torch.autograd.grad(ops.conv3x3(*leaves, stride, relu=relu), leaves, grad)
    ref = [t.double().requires_grad_() for t in (x, weight, bias)]
    reference(*ref, relu, stride).backward(grad.double())
    assert_channels_last(grad_input)  # (as computed: a leaf's .grad would take the leaf's layout)
    # The input gradient is a convolution of grad (RMS 1) with the flipped filters.
    assert_close_winograd(grad_input, ref[0].grad, grad, weight.transpose(0, 1), tile)
    # Weight and bias gradients: float32 sums over N Ho Wo pixels (Winograd's at stride 1; the
    # bound of test_weight_gradient_matches_float64).
    error = (grad_weight.double() - ref[1].grad).abs().max().item()
    assert error <= TOL_U_TILE[tile] * U32 * weight_gradient_scale(x, grad)
    torch.testing.assert_close(grad_bias.double(), ref[2].grad, atol=1e-5, rtol=1e-5)


def weight_gradient_scale(x, grad):
    """sqrt(N Ho Wo) rms(x) rms(grad): the RMS of a weight gradient of random data."""
    pixels = grad.size(0) * grad.size(2) * grad.size(3)
    return pixels**0.5 * x.double().square().mean().sqrt().item() * grad.double().square().mean().sqrt().item()


@pytest.mark.parametrize("kind", ["channels_last", "nhwc_slice", "strided"])
@pytest.mark.parametrize(
    "shape", SHAPES + [(2, 64, 64, 56, 56), (1, 16, 24, 150, 201)], ids=lambda s: "x".join(map(str, s))
)
def test_weight_gradient_matches_float64(cpu_capability, tile, shape, kind):
    """The Winograd weight gradient, G^T [sum over tiles of (A dy A^T) * (B^T d B)] G, against
    float64. Its largest error measured over these shapes is 2-42 u * scale for F(2x2, 3x3) and
    40-480 u for F(4x4, 3x3) (scale: the RMS of the gradient, weight_gradient_scale), growing
    slowly with the number of tiles (ATen's direct float32 sums: 2-580 u, growing with the
    pixels): asserted within the forward's bounds (256 u and 4096 u)."""
    n, c_in, c_out, h, w = shape
    x, _, _ = make_case(n, c_in, c_out, h, w, seed=sum(shape))
    grad = torch.randn(n, c_out, h, w, generator=torch.Generator().manual_seed(7))
    grad_weight, grad_bias = BACKWARD_WEIGHT(layout(grad, kind), layout(x, kind), 1)
    assert grad_weight.is_contiguous() and grad_weight.shape == (c_out, c_in, 3, 3)
    expected = torch.nn.grad.conv2d_weight(x.double(), (c_out, c_in, 3, 3), grad.double(), 1, 1)
    error = (grad_weight.double() - expected).abs().max().item() / (U32 * weight_gradient_scale(x, grad))
    assert error <= TOL_U_TILE[tile], f"max error {error:.0f} u * scale"
    torch.testing.assert_close(grad_bias.double(), grad.double().sum((0, 2, 3)), atol=1e-4, rtol=1e-5)


def test_gradients_of_the_relu_follow_the_output():
    """The ReLU mask is output > 0 (as torch.relu's): no gradient where the output is 0."""
    x, weight, bias = make_case(2, 6, 5, 5, 4, seed=14)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    y = ops.conv3x3(*leaves, relu=True)
    assert 0.3 < (y == 0).double().mean() < 0.7
    (grad_bias,) = torch.autograd.grad(y.sum(), leaves[2])
    torch.testing.assert_close(grad_bias, (y > 0).sum((0, 2, 3)).float())


@pytest.mark.parametrize(
    "needs,calls",
    [
        ((True, False, False), {"msrcnn::_conv3x3_backward_input"}),
        ((False, True, False), {"msrcnn::_conv3x3_backward_weight"}),
        ((False, False, True), {"msrcnn::_conv3x3_backward_weight"}),
        ((True, True, True), {"msrcnn::_conv3x3_backward_input", "msrcnn::_conv3x3_backward_weight"}),
    ],
)
def test_backward_runs_only_the_gradients_needed(needs, calls):
    x, weight, bias = make_case(2, 5, 4, 6, 5, seed=15)
    leaves = [t.requires_grad_(need) for t, need in zip((x, weight, bias), needs)]
    y = ops.conv3x3(*leaves, relu=True)
    names = profiled_ops(lambda: y.sum().backward())
    assert {name for name in names if name.startswith("msrcnn::")} == calls
    for t, need in zip(leaves, needs):
        assert (t.grad is not None) == need


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(2, 257, 16, 5, 7), (1, 6, 9, 40, 33), (3, 4, 5, 1, 2)], ids=str)
def test_backward_ops_match_aten(cpu_capability, tile, shape, stride, dtype):
    """The two backward ops called directly, against ATen's convolution gradients in float64.
    (40x33 maps: the weight gradient's NCHW path for maps of 32x32 pixels or more.)"""
    n, c_in, c_out, h, w = shape
    x, weight, _ = make_case(n, c_in, c_out, h, w, dtype=dtype, seed=2)
    grad = torch.randn(
        n, c_out, output_size(h, stride), output_size(w, stride), generator=torch.Generator().manual_seed(3)
    )
    grad = grad.to(dtype)
    grad_input = BACKWARD_INPUT(grad, weight, stride, h, w)
    assert grad_input.dtype == dtype
    assert_channels_last(grad_input)
    expected = torch.nn.grad.conv2d_input(x.shape, weight.double(), grad.double(), stride, 1)
    grad_weight, grad_bias = BACKWARD_WEIGHT(grad, x, stride)
    assert grad_weight.dtype == grad_bias.dtype == dtype and grad_weight.is_contiguous()
    expected_weight = torch.nn.grad.conv2d_weight(x.double(), weight.shape, grad.double(), stride, 1)
    if dtype == torch.float32:
        assert_close_winograd(grad_input, expected, grad, weight.transpose(0, 1), tile)
        error = (grad_weight.double() - expected_weight).abs().max().item()
        assert error <= TOL_U_TILE[tile] * U32 * weight_gradient_scale(x, grad), error
    elif dtype == torch.float64:
        torch.testing.assert_close(grad_input, expected, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(grad_weight, expected_weight, atol=1e-12, rtol=1e-12)
    else:  # one rounding of float32 sums (grad_input), or of ATen's bfloat16 sums (grad_weight)
        torch.testing.assert_close(grad_input.double(), expected, atol=1e-2, rtol=2 * 2**-8)
        torch.testing.assert_close(grad_weight.double(), expected_weight, atol=0.1, rtol=0.05)
    torch.testing.assert_close(grad_bias.double(), grad.double().sum((0, 2, 3)), atol=1e-4, rtol=2 * 2**-8)


def test_backward_ops_of_empty_maps():
    weight = torch.randn(4, 3, 3, 3)
    assert BACKWARD_INPUT(torch.zeros(0, 4, 3, 3), weight, 2, 5, 6).shape == (0, 3, 5, 6)
    assert not BACKWARD_INPUT(torch.zeros(2, 0, 3, 3), weight[:0], 1, 3, 3).any()  # no output channels
    grad_weight, grad_bias = BACKWARD_WEIGHT(torch.zeros(0, 4, 3, 3), torch.zeros(0, 3, 5, 6), 2)
    assert grad_weight.shape == (4, 3, 3, 3) and not grad_weight.any() and not grad_bias.any()
    grad_weight, _ = BACKWARD_WEIGHT(torch.randn(2, 4, 3, 3), torch.zeros(2, 0, 3, 3), 1)  # Cin = 0
    assert grad_weight.shape == (4, 0, 3, 3)


# --- registration, compile, FLOPs, autocast -------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    x, weight, bias = make_case(2, 6, 5, 5, 3, dtype=dtype)
    cl = x.contiguous(memory_format=torch.channels_last)
    for args in [
        (x.clone().requires_grad_(), weight.clone().requires_grad_(), bias.clone().requires_grad_(), 1, True),
        (x.clone().requires_grad_(), weight.clone().requires_grad_(), bias.clone().requires_grad_(), 2, False),
        (cl, weight, None, 1, False),
        (cl.clone().requires_grad_(), weight.clone().requires_grad_(), None, 2, True),
        (torch.zeros(0, 6, 2, 2, dtype=dtype), weight, bias, 1, True),
        (torch.randn(2, 1, 1, 1, dtype=dtype), torch.randn(1, 1, 3, 3, dtype=dtype), None, 1, True),
    ]:
        torch.library.opcheck(OP.default, args)
    for stride in (1, 2):
        grad = torch.randn(2, 5, output_size(5, stride), output_size(3, stride), dtype=dtype)
        torch.library.opcheck(BACKWARD_INPUT.default, (grad, weight, stride, 5, 3))
        torch.library.opcheck(BACKWARD_WEIGHT.default, (grad, x, stride))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("relu", [False, True])
def test_torch_compile_fullgraph(relu, stride):
    conv = Conv3x3(6, 5, stride=stride, relu=relu)

    def fn(x):
        return conv(x) + ops.conv3x3(x, conv.weight, None, stride)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    assert_compiled_matches_eager(fn, compiled, x)


def test_flop_count_is_the_convolution():
    x, weight, bias = make_case(2, 6, 5, 5, 3)
    leaves = [t.requires_grad_() for t in (x, weight, bias)]
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        y = ops.conv3x3(*leaves, relu=True)
    assert counter.get_total_flops() == 2 * 2 * 6 * 5 * 9 * 15
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        y.sum().backward()
    assert counter.get_total_flops() == 2 * 2 * 2 * 6 * 5 * 9 * 15  # the input and weight gradients
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        ops.conv3x3(x.detach(), weight.detach(), None, 2)
    assert counter.get_total_flops() == 2 * 2 * 6 * 5 * 9 * 3 * 2


def test_autocast_computes_in_the_autocast_dtype():
    x, weight, bias = make_case(2, 6, 5, 5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops.conv3x3(x, weight, bias, relu=True)
        assert y.dtype == torch.bfloat16
        assert Conv3x3(6, 5)(x).dtype == torch.bfloat16
        with pytest.raises(ValueError, match=r"expected weight \[Cout, 6, 3, 3\]"):  # still checked
            ops.conv3x3(x, weight[:, :4])
    expected = reference(x.bfloat16().float(), weight.bfloat16().float(), bias.bfloat16().float(), True)
    torch.testing.assert_close(y.double(), expected, atol=1e-3, rtol=2 * 2**-8)


def test_autocast_leaves_float64_alone_as_for_conv2d():
    x, weight, bias = (t.double() for t in make_case(2, 6, 5, 5, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops.conv3x3(x, weight, bias, relu=True)
        expected = torch.relu(F.conv2d(x, weight, bias, 1, 1))
    assert y.dtype == expected.dtype == torch.float64
    torch.testing.assert_close(y, expected)


W = torch.zeros(8, 4, 3, 3)
X = torch.zeros(2, 4, 5, 5)


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((X, torch.zeros(8, 4, 1, 1), None, 1), ValueError, r"expected weight \[Cout, 4, 3, 3\]"),
        ((X, torch.zeros(8, 3, 3, 3), None, 1), ValueError, r"expected weight \[Cout, 4, 3, 3\]"),
        ((torch.zeros(4, 5, 5), W, None, 1), ValueError, r"expected input \[N, Cin, H, W\]"),
        ((X, torch.zeros(8, 4, 3), None, 1), ValueError, "expected weight"),
        ((X, W, torch.zeros(7), 1), ValueError, r"expected bias \[8\]"),
        ((X, W, None, 3), ValueError, "expected stride 1 or 2, got 3"),
        ((X, W, None, 0), ValueError, "expected stride 1 or 2, got 0"),
        ((X, W.double(), None, 1), TypeError, "weight of the input's dtype"),
        ((X.half(), W, None, 1), TypeError, "weight of the input's dtype"),
        ((X, W, torch.zeros(8).half(), 1), TypeError, "bias of the input's dtype"),
        ((X.int(), W.int(), None, 1), TypeError, "input to be a floating-point"),
        # (a meta tensor sends the call to the fake kernel, which checks as the C++ one does)
        ((X, W.to("meta"), None, 1), ValueError, "input and weight on one device"),
        ((X, W, torch.zeros(8, device="meta"), 1), ValueError, "input and bias on one device"),
        ((X.to("meta"), W, None, 3), ValueError, "expected stride 1 or 2, got 3"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        OP(*args, False)
    with pytest.raises(error, match=match):
        ops.conv3x3(*args, relu=True)


G = torch.zeros(2, 8, 5, 5)


@pytest.mark.parametrize(
    "op,args,error,match",
    [
        (BACKWARD_INPUT, (G, W, 3, 5, 5), ValueError, "expected stride 1 or 2, got 3"),
        (BACKWARD_INPUT, (G, W, 1, 6, 5), ValueError, r"expected grad \[N, Cout, 6, 5\]"),
        (BACKWARD_INPUT, (G, W, 2, 5, 5), ValueError, r"expected grad \[N, Cout, 3, 3\]"),
        (BACKWARD_INPUT, (G, W[:7], 1, 5, 5), ValueError, r"expected weight \[8, Cin, 3, 3\]"),
        (BACKWARD_INPUT, (G[0], W, 1, 5, 5), ValueError, "grad"),
        (BACKWARD_INPUT, (G, W.double(), 1, 5, 5), TypeError, "weight .* of grad's dtype"),
        (BACKWARD_INPUT, (G.int(), W.int(), 1, 5, 5), TypeError, "grad to be a floating-point"),
        (BACKWARD_WEIGHT, (G, X, 3), ValueError, "expected stride 1 or 2, got 3"),
        (BACKWARD_WEIGHT, (G, X[:1], 1), ValueError, r"expected grad \[1, Cout, 5, 5\]"),
        (BACKWARD_WEIGHT, (G, X, 2), ValueError, r"expected grad \[2, Cout, 3, 3\]"),
        (BACKWARD_WEIGHT, (G, X[0], 1), ValueError, "input"),
        (BACKWARD_WEIGHT, (G, X.double(), 1), TypeError, "input .* of grad's dtype"),
    ],
)
def test_backward_ops_bad_input(op, args, error, match):
    with pytest.raises(error, match=match):
        op(*args)


# --- the Conv3x3 module ---------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_module_is_a_conv2d(stride, relu, bias):
    """Same parameters and state_dict as nn.Conv2d(in, out, 3, stride, padding=1); its output
    and gradients are nn.Conv2d's (+ ReLU) up to float32 rounding; channels-last output."""
    torch.manual_seed(0)
    module = Conv3x3(9, 12, stride=stride, bias=bias, relu=relu)
    plain = nn.Conv2d(9, 12, 3, stride=stride, padding=1, bias=bias)
    assert isinstance(module, nn.Conv2d)
    assert (module.kernel_size, module.padding, module.stride) == ((3, 3), (1, 1), (stride, stride))
    assert {k: v.shape for k, v in module.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    plain.load_state_dict(module.state_dict())
    x = torch.randn(3, 9, 11, 13, requires_grad=True)
    actual = module(x)
    expected = torch.relu(plain(x)) if relu else plain(x)
    assert_channels_last(actual)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    grads = torch.autograd.grad(actual, [x, *module.parameters()], grad)
    grads_expected = torch.autograd.grad(expected, [x, *plain.parameters()], grad)
    for g, e in zip(grads, grads_expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)
    assert f"relu={relu}, exact_aten=False" in repr(module)


def test_module_float64_and_errors():
    module = Conv3x3(6, 4, relu=True).double()
    plain = nn.Conv2d(6, 4, 3, padding=1).double()
    plain.load_state_dict(module.state_dict())
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(module(x), torch.relu(plain(x)), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="stride: expected 1 or 2, got 3"):
        Conv3x3(4, 4, stride=3)
    with pytest.raises(ValueError, match=r"expected weight \[Cout, 5, 3, 3\] for input \[2, 5, 5, 7\]"):
        module(torch.randn(2, 5, 5, 7, dtype=torch.float64))


@pytest.mark.parametrize("layout_kind", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("relu", [False, True])
def test_exact_aten_is_conv2d_bit_for_bit(relu, stride, layout_kind):
    """exact_aten: F.conv2d (+ ReLU) and ATen's autograd, i.e. nn.Conv2d's numerics exactly;
    settable at any time."""
    torch.manual_seed(1)
    module = Conv3x3(7, 8, stride=stride, relu=relu, exact_aten=True)
    plain = nn.Conv2d(7, 8, 3, stride=stride, padding=1)
    plain.load_state_dict(module.state_dict())
    x = layout(torch.randn(2, 7, 9, 10), layout_kind).requires_grad_()
    actual = module(x)
    expected = torch.relu(plain(x)) if relu else plain(x)
    assert actual.stride() == expected.stride()
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)
    grad = torch.randn_like(expected)
    grads = torch.autograd.grad(actual, [x, module.weight, module.bias], grad)
    grads_expected = torch.autograd.grad(expected, [x, plain.weight, plain.bias], grad)
    for g, e in zip(grads, grads_expected):
        torch.testing.assert_close(g, e, atol=0, rtol=0)
    names = profiled_ops(lambda: module(x))
    assert "aten::convolution" in names and "msrcnn::conv3x3" not in names
    module.exact_aten = False
    names = profiled_ops(lambda: module(x))
    assert "msrcnn::conv3x3" in names
    assert "exact_aten=False" in repr(module)


def test_from_conv2d_shares_the_parameters():
    conv = nn.Conv2d(5, 6, 3, stride=2, padding=1).eval()
    module = Conv3x3.from_conv2d(conv, relu=True, exact_aten=True)
    assert type(module) is Conv3x3 and module.relu and module.exact_aten and not module.training
    assert module.weight is conv.weight and module.bias is conv.bias and module.stride == (2, 2)
    assert all(p.device.type == "cpu" for p in module.parameters())
    x = torch.randn(2, 5, 7, 6)
    torch.testing.assert_close(module(x), torch.relu(conv(x)), atol=0, rtol=0)
    no_bias = Conv3x3.from_conv2d(nn.Conv2d(5, 6, 3, padding=1, bias=False))
    assert no_bias.bias is None and not no_bias.relu and not no_bias.exact_aten and no_bias.training
    assert set(no_bias.state_dict()) == {"weight"}


class _SubConv(nn.Conv2d):
    pass


INELIGIBLE = {
    "1x1": lambda: nn.Conv2d(4, 4, 1),
    "5x5": lambda: nn.Conv2d(4, 4, 5, padding=2),
    "padding_0": lambda: nn.Conv2d(4, 4, 3),
    "padding_2": lambda: nn.Conv2d(4, 4, 3, padding=2),
    "stride_3": lambda: nn.Conv2d(4, 4, 3, stride=3, padding=1),
    "stride_1x2": lambda: nn.Conv2d(4, 4, 3, stride=(1, 2), padding=1),
    "dilation_2": lambda: nn.Conv2d(4, 4, 3, padding=1, dilation=2),
    "groups_2": lambda: nn.Conv2d(4, 4, 3, padding=1, groups=2),
    "reflect": lambda: nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    "subclass": lambda: _SubConv(4, 4, 3, padding=1),
}


@pytest.mark.parametrize("name", list(INELIGIBLE))
def test_from_conv2d_refuses_what_the_op_does_not_compute(name):
    conv = INELIGIBLE[name]()
    with pytest.raises(ValueError, match="conv: expected a 3x3 nn.Conv2d"):
        Conv3x3.from_conv2d(conv)
    assert Conv3x3.convert(conv) is conv


def test_convert_replaces_only_eligible_plain_conv2d():
    torch.manual_seed(2)
    head = Conv3x3(4, 4, relu=True)
    model = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False), nn.ReLU()),
        *(make() for make in INELIGIBLE.values()),
        head,
    )
    before = {name: type(m) for name, m in model.named_modules()}
    params = dict(model.named_parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert Conv3x3.convert(model) is model
    converted = {name for name, m in model.named_modules() if type(m) is not before[name]}
    assert converted == {"0", "1.0"}
    assert type(model[0]) is Conv3x3 and model[1][0].stride == (2, 2) and model[1][0].bias is None
    assert model[-1] is head and head.relu
    assert all(p is params[name] for name, p in model.named_parameters())  # the same Parameter objects
    assert len(params) == len(list(model.parameters()))
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    # idempotent: nothing is rebuilt the second time
    modules = dict(model.named_modules())
    assert Conv3x3.convert(model) is model
    assert all(m is modules[name] for name, m in model.named_modules())
    # exact_aten is set on every Conv3x3 it holds, those it did not build too, and unset again
    Conv3x3.convert(model, exact_aten=True)
    assert all(m.exact_aten for m in model.modules() if isinstance(m, Conv3x3))
    assert all(m is modules[name] for name, m in model.named_modules())
    Conv3x3.convert(model)
    assert not any(m.exact_aten for m in model.modules() if isinstance(m, Conv3x3))


def test_convert_of_a_conv_returns_a_new_module():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    module = Conv3x3.convert(conv, exact_aten=True)
    assert type(module) is Conv3x3 and module is not conv and module.weight is conv.weight and module.exact_aten
    assert Conv3x3.convert(module) is module and not module.exact_aten


def test_convert_keeps_the_outputs_and_training():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1))
    x = torch.randn(2, 3, 9, 10)
    expected = model(x).detach()
    Conv3x3.convert(model)
    y = model(x)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    Conv3x3.convert(model, exact_aten=True)
    torch.testing.assert_close(model(x), expected, atol=0, rtol=0)


# --- the model's wiring ---------------------------------------------------------------------------


def _randomise_frozen_bn(module):
    for bn in module.modules():
        if isinstance(bn, FrozenBatchNorm2d):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2)


def test_backbone_convert_then_fold():
    """resnet_fpn_backbone through Conv3x3.convert and fold_frozen_batchnorm (as the model
    factory does): every 3x3 conv of the ResNet (stride 1 and 2) becomes a
    FrozenBatchNormConv3x3, the FPN's 3x3 output convs Conv3x3s; the stem (7x7) and the 1x1
    convs stay ATen's (FrozenBatchNormConv2d where a norm follows). Outputs and state_dict are
    unchanged; training still backpropagates."""
    torch.manual_seed(0)
    body = resnet_fpn_backbone(depth=18, trainable_layers=5)
    _randomise_frozen_bn(body)
    x = torch.randn(1, 3, 64, 96)
    expected = {k: v.detach() for k, v in body(x).items()}
    state = {k: v.clone() for k, v in body.state_dict().items()}
    Conv3x3.convert(body)
    assert fold_frozen_batchnorm(body) == 20  # the stem, 8 blocks x 2 convs, 3 downsamples
    convs = {name: type(m) for name, m in body.named_modules() if isinstance(m, nn.Conv2d)}
    # resnet18: 8 blocks x 2 convs, the first of layers 2-4 at stride 2.
    assert sorted(n for n, t in convs.items() if t is FrozenBatchNormConv3x3) == sorted(
        f"body.layer{i}.{j}.conv{k}" for i in range(1, 5) for j in range(2) for k in (1, 2)
    )
    assert body.body.layer2[0].conv1.stride == (2, 2)
    assert sorted(n for n, t in convs.items() if t is Conv3x3) == [f"fpn.layer_blocks.{i}.0" for i in range(4)]
    assert convs["body.conv1"] is FrozenBatchNormConv2d
    assert sorted(n for n, t in convs.items() if t is FrozenBatchNormConv2d) == [
        "body.conv1",
        *(f"body.layer{i}.0.downsample.0" for i in range(2, 5)),
    ]
    assert sorted(n for n, t in convs.items() if t is nn.Conv2d) == [f"fpn.inner_blocks.{i}.0" for i in range(4)]
    assert body.state_dict().keys() == state.keys()
    assert all(torch.equal(body.state_dict()[k], v) for k, v in state.items())
    actual = body(x)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, atol=1e-4, rtol=1e-4)  # 8 blocks of float32 convs
    sum(v.sum() for v in actual.values()).backward()
    assert body.body.layer4[1].conv2.weight.grad is not None
    assert body.body.layer2[0].conv1.weight.grad is not None


@pytest.mark.parametrize("exact_aten", [False, True])
def test_built_model_runs_its_3x3_convs_through_the_op(exact_aten):
    """msrcnn_resnet18_fpn: the ResNet's 3x3 convs (C4 and C5 only feed the FPN here, but all
    are converted) with folded norms, the FPN's output convs, the RPN's conv and the heads' convs
    are Conv3x3s; exact_aten_convs sets exact_aten on every one of them."""
    model = msrcnn_resnet18_fpn(num_classes=3, exact_aten_convs=exact_aten)
    kinds = {name: type(m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    folded = sorted(n for n, t in kinds.items() if t is FrozenBatchNormConv3x3)
    assert folded == sorted(
        f"backbone.body.layer{i}.{j}.conv{k}" for i in range(1, 5) for j in range(2) for k in (1, 2)
    )
    plain = sorted(n for n, t in kinds.items() if t is Conv3x3)
    assert plain == sorted(
        [f"backbone.fpn.layer_blocks.{i}.0" for i in range(2)]
        + ["rpn.head.conv.0.0"]
        + [f"roi_heads.mask_head.convs.{i}" for i in range(4)]
        + [f"roi_heads.maskiou_head.convs.{i}" for i in range(4)]
    )
    heads = [model.get_submodule(n) for n in plain if ".convs." in n]
    assert all(m.relu for m in heads) and model.roi_heads.maskiou_head.convs[3].stride == (2, 2)
    assert not model.get_submodule("rpn.head.conv.0.0").relu  # its ReLU is the next module
    assert all(m.exact_aten == exact_aten for m in model.modules() if isinstance(m, Conv3x3))
    assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, Conv3x3))
    assert kinds["backbone.body.conv1"] is FrozenBatchNormConv2d


# --- inference keeps the transformed filters ----------------------------------------------


def _filter_stats():
    import msrcnn_fast

    s = msrcnn_fast.memory_stats()
    return s["conv3x3_filters"], s["conv3x3_filter_hits"]


def test_a_weight_seen_twice_is_kept_and_found_again_by_its_contents():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 32, 20, 20, generator=g)
    w = torch.randn(48, 32, 3, 3, generator=g) / 20
    kept, hits = _filter_stats()
    first = ops.conv3x3(x, w)
    assert _filter_stats() == (kept, hits)  # seen once: not kept
    ops.conv3x3(x, w)
    assert _filter_stats() == (kept + 1, hits)  # seen twice: kept
    again = ops.conv3x3(x, w.clone())  # the same contents elsewhere: found
    assert _filter_stats() == (kept + 1, hits + 1)
    assert torch.equal(again, first)
    w.data[5, 3, 1, 1] += 1.0  # changed in place, behind autograd's version counter
    changed = ops.conv3x3(x, w)
    assert _filter_stats() == (kept + 1, hits + 1)
    reference = F.conv2d(x.double(), w.double(), padding=1)
    assert (changed.double() - reference).abs().max() < 1e-4
    assert (first.double() - reference).abs().max() > 1e-2  # the old filters would be wrong


def test_training_keeps_no_filters_and_empty_cache_drops_them():
    import msrcnn_fast

    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 16, 12, 12, generator=g)
    w = torch.randn(16, 16, 3, 3, generator=g, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.1)
    before = _filter_stats()
    for _ in range(3):  # the weights change at every step
        optimizer.zero_grad()
        ops.conv3x3(x, w).square().sum().backward()
        optimizer.step()
    assert _filter_stats() == before
    with torch.no_grad():
        ops.conv3x3(x, w)
        ops.conv3x3(x, w)
    assert _filter_stats()[0] == before[0] + 1
    msrcnn_fast.empty_cache()
    assert _filter_stats()[0] == 0 == msrcnn_fast.memory_stats()["conv3x3_filter_bytes"]
