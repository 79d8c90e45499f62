"""The Triton 3x3 convolution kernels (msrcnn_fast.kernels.conv3x3): msrcnn::conv3x3's CUDA
kernels, against ``F.conv2d`` (+ ReLU) and its autograd.

msrcnn_fast/ops/conv3x3.py registers them for the CUDA dispatch key (float64 runs ATen there).
Here (no GPU) they run on CPU tensors under the Triton interpreter, reached three ways:

- ``cuda_kernel(name, ...)``: the kernel registered for CUDA, called through the dispatcher
  (``redispatch`` to the CUDA key) on CPU tensors: exactly what a CUDA tensor runs;
- the ``triton_on_cpu`` fixture: the ops' CPU kernels replaced, for one test, by calls of their
  CUDA kernels, so that ``ops.conv3x3``, the autograd formula and opcheck run the Triton path;
- the launchers themselves, with explicit tiles.

Shapes are small: a few RoIs, 16-35 input channels (the 256 + 1 split of the MaskIoU head's first
layer is 16 + 1 here), odd map sizes, 16- or 32-wide tiles so that every tile kind is partial
somewhere. The compiled kernels run in the tests marked ``cuda`` (skipped without a GPU).
(msrcnn::conv3x3's CPU kernels: tests/ops/test_conv3x3.py.)

Tolerances. float32 is compared with a float64 reference of the same values: the kernels
accumulate in float32 in their own order, |error| <~ sqrt(K) * 2^-24 * sum|terms| with K <= 315
terms of size <~ 1 here, i.e. about 1e-6; 1e-5 (atol and rtol) leaves a margin and is still four
orders of magnitude below what a wrong tap, channel or pixel gives (O(0.1)). float16/bfloat16
are compared with the float32 reference of the same (rounded) values: the kernels accumulate in
float32 and round once, so the error is one rounding of the result, u = 2^-11 (float16) or 2^-8
(bfloat16) relative; rtol = 2u, atol = 1e-5 for the float32 accumulation.
"""

import importlib

import pytest
import torch
import torch.nn.functional as F
import triton
from msrcnn_fast.kernels import conv3x3 as kernels

from msrcnn_fast import ops

conv3x3_ops = importlib.import_module("msrcnn_fast.ops.conv3x3")  # (ops.conv3x3 is the function)

ATOL32 = RTOL32 = 1e-5
HALF_RTOL = {torch.float16: 2 * 2**-11, torch.bfloat16: 2 * 2**-8}
OPS = {
    name: getattr(torch.ops.msrcnn, name) for name in ("conv3x3", "_conv3x3_backward_input", "_conv3x3_backward_weight")
}
LAUNCHERS = ("conv3x3_forward", "conv3x3_backward_input", "conv3x3_backward_weight")


def cuda_kernel(name, *args):
    """msrcnn::<name>'s CUDA kernel (registered in msrcnn_fast/ops/conv3x3.py), called through the
    dispatcher on these tensors whatever their device."""
    return OPS[name].default.redispatch(torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA), *args)


@pytest.fixture
def triton_on_cpu(interpreter):
    """The ops run their CUDA kernels on CPU tensors (the Triton launchers under the interpreter):
    their CPU kernels are replaced for the test (torch.library restores them afterwards)."""
    with torch.library._scoped_library("msrcnn", "IMPL") as lib:
        for name in OPS:
            lib.impl(name, lambda *args, name=name: cuda_kernel(name, *args), "CPU")
        yield


@pytest.fixture
def launches(monkeypatch):
    """The names of the Triton launchers called during the test, in order."""
    calls = []
    for name in LAUNCHERS:
        launcher = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, f=launcher, n=name, **k: calls.append(n) or f(*a, **k))
    return calls


def make_case(n, c_in, c_out, h, w, stride, dtype=torch.float32, seed=0, bias=True):
    """Input, weight (Kaiming-like scale, so outputs are O(1)), bias and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g)
    weight = torch.randn(c_out, c_in, 3, 3, generator=g) / (9 * max(c_in, 1)) ** 0.5
    b = 0.1 * torch.randn(c_out, generator=g) if bias else None
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    grad = torch.randn(n, c_out, ho, wo, generator=g)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    return cast(x), cast(weight), cast(b), cast(grad)


def reference(x, weight, b, grad, stride, relu=True, dtype=torch.float64):
    """relu?(conv2d) and the gradients of (input, weight, bias), computed in ``dtype``."""
    leaves = [None if t is None else t.detach().to(dtype).requires_grad_() for t in (x, weight, b)]
    y = F.conv2d(leaves[0], leaves[1], leaves[2], stride, 1)
    y = torch.relu(y) if relu else y
    y.backward(grad.to(dtype))
    return y.detach(), *(None if t is None else t.grad for t in leaves)


def run_op(x, weight, b, grad, stride, relu=True):
    """ops.conv3x3 through autograd: output and the gradients of (input, weight, bias)."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (x, weight, b)]
    y = ops.conv3x3(leaves[0], leaves[1], leaves[2], stride, relu=relu)
    inputs = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, inputs, grad))
    return y.detach(), *(None if t is None else next(grads) for t in leaves)


def assert_close32(actual, expected):
    torch.testing.assert_close(actual.double(), expected.double(), atol=ATOL32, rtol=RTOL32)


# --- the ops on their CUDA kernels, under the interpreter -------------------------------------


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize(
    "c_in,c_out,h,w,stride",
    [
        (17, 24, 7, 5, 1),  # 16 + 1 channels: the 256 + 1 split of the MaskIoU head's first conv
        (17, 24, 7, 5, 2),  # stride 2 on odd sizes: parity classes of 4x3, 4x2, 3x3 and 3x2 pixels
        (32, 20, 6, 6, 2),  # no tail channel; Cout not a multiple of the tile
        (5, 16, 4, 3, 1),  # tail channels only (Cin < 16)
    ],
)
def test_forward_and_gradients_match_aten(triton_on_cpu, launches, c_in, c_out, h, w, stride, relu):
    x, weight, b, grad = make_case(2, c_in, c_out, h, w, stride)
    y, dx, dw, db = run_op(x, weight, b, grad, stride, relu)
    assert launches == list(LAUNCHERS)
    y_ref, dx_ref, dw_ref, db_ref = reference(x, weight, b, grad, stride, relu)
    assert 0.2 < (y_ref > 0).double().mean() < 0.8  # the ReLU mask matters in the backward
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert (y < 0).any() != relu
    assert_close32(y, y_ref)
    assert_close32(dx, dx_ref)
    assert_close32(dw, dw_ref)
    assert_close32(db, db_ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("relu", [True, False])
def test_half_types_accumulate_in_float32(triton_on_cpu, dtype, stride, relu):
    x, weight, b, grad = make_case(2, 17, 24, 6, 5, stride, dtype=dtype, seed=1)
    actual = run_op(x, weight, b, grad, stride, relu)
    expected = reference(x, weight, b, grad, stride, relu, dtype=torch.float32)
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), e, atol=1e-5, rtol=HALF_RTOL[dtype])


def test_layouts_and_no_bias(triton_on_cpu):
    x, weight, _, grad = make_case(2, 18, 16, 5, 6, 1, seed=2, bias=False)
    y_ref, dx_ref, dw_ref, _ = reference(x, weight, None, grad, 1)
    for layout in (x, x.contiguous(memory_format=torch.channels_last)):
        assert_close32(ops.conv3x3(layout, weight, None, relu=True), y_ref)
    wide = torch.randn(2, 40, 5, 6)
    wide[:, 3:39:2] = x
    y, dx, dw, db = run_op(wide[:, 3:39:2], weight, None, grad, 1)  # a strided view of another tensor
    assert db is None
    assert_close32(y, y_ref)
    assert_close32(dx, dx_ref)
    assert_close32(dw, dw_ref)


def test_input_gradient_alone(triton_on_cpu, launches):
    """Frozen weight and bias: only the input-gradient kernel runs in the backward."""
    x, weight, b, grad = make_case(1, 17, 16, 5, 5, 2, seed=3)
    xr = x.clone().requires_grad_()
    ops.conv3x3(xr, weight, b, 2, relu=True).backward(grad)
    assert_close32(xr.grad, reference(x, weight, b, grad, 2)[1])
    assert launches == ["conv3x3_forward", "conv3x3_backward_input"]


def test_tiny_maps_and_empty_batch(triton_on_cpu):
    """1x1 and 2x1 maps (every tap but the centre one falls in the padding) and zero RoIs."""
    for h, w, stride in [(1, 1, 1), (2, 1, 2)]:
        x, weight, b, grad = make_case(3, 17, 16, h, w, stride, seed=5)
        for actual, expected in zip(run_op(x, weight, b, grad, stride), reference(x, weight, b, grad, stride)):
            assert_close32(actual, expected)
    x, weight, b, grad = make_case(0, 17, 16, 4, 4, 2)
    y, dx, dw, db = run_op(x, weight, b, grad, 2)
    assert y.shape == (0, 16, 2, 2) and dx.shape == x.shape
    assert not dw.any() and not db.any()


@pytest.mark.parametrize("stride", [1, 2])
def test_no_input_channels_give_the_bias(interpreter, launches, stride):
    """Cin = 0 (the launcher's own branch, no kernel launch): relu?(bias), zeros without a bias."""
    x, weight, b, _ = make_case(2, 0, 5, 3, 4, stride)
    for relu in (False, True):
        y = cuda_kernel("conv3x3", x, weight, b, stride, relu)
        expected = (torch.relu(b) if relu else b).reshape(1, 5, 1, 1).expand_as(y)
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, expected, atol=0, rtol=0)
        assert not cuda_kernel("conv3x3", x, weight, None, stride, relu).any()
    assert launches == ["conv3x3_forward"] * 4


def test_opcheck_of_the_cuda_kernels(triton_on_cpu):
    """Schemas, fake kernels and autograd against the Triton path. (The input gradient's opcheck
    with Cin not a multiple of 16: see test_backward_input_strides_match_the_fake, below.)"""
    x, weight, b, grad = make_case(2, 17, 16, 5, 4, 2, seed=6)
    for args in [
        (x.clone().requires_grad_(), weight.clone().requires_grad_(), b.clone().requires_grad_(), 2, True),
        (x, weight, None, 1, False),
    ]:
        torch.library.opcheck(OPS["conv3x3"].default, args)
    torch.library.opcheck(OPS["_conv3x3_backward_weight"].default, (grad, x, 2))
    x, weight, _, grad = make_case(2, 32, 16, 5, 4, 1, seed=7)
    torch.library.opcheck(OPS["_conv3x3_backward_input"].default, (grad, weight, 1, 5, 4))


# --- the CUDA kernels' other paths and routing -------------------------------------------------


def test_cuda_kernels_run_the_launchers_and_aten_for_float64(interpreter, launches):
    """float32, float16 and bfloat16 launch the Triton kernels (with the op's relu); float64 runs
    ATen's convolution and its gradients, channels-last."""
    x, weight, b, grad = make_case(2, 17, 16, 5, 4, 2, seed=8)
    y = cuda_kernel("conv3x3", x, weight, b, 2, False)
    assert (y < 0).any()
    assert_close32(y, reference(x, weight, b, grad, 2, relu=False)[0])
    assert launches == ["conv3x3_forward"]
    launches.clear()
    x, weight, b, grad = (t.double() for t in (x, weight, b, grad))
    expected = reference(x, weight, b, grad, 2, relu=False)
    y = cuda_kernel("conv3x3", x, weight, b, 2, False)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        y, F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, b, 2, 1), atol=0, rtol=0
    )
    torch.testing.assert_close(cuda_kernel("conv3x3", x, weight, b, 2, True), torch.relu(y), atol=0, rtol=0)
    dx = cuda_kernel("_conv3x3_backward_input", grad, weight, 2, 5, 4)
    assert dx.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(dx, expected[1], atol=1e-12, rtol=1e-12)
    dw, db = cuda_kernel("_conv3x3_backward_weight", grad, x, 2)
    assert dw.is_contiguous()
    torch.testing.assert_close(dw, expected[2], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(db, expected[3], atol=1e-12, rtol=1e-12)
    assert launches == []


def test_cpu_tensors_take_the_cpu_kernels_under_the_interpreter(interpreter, launches):
    """The dispatcher picks the kernel by device: TRITON_INTERPRET does not send CPU tensors to
    the Triton kernels (the C++ CPU kernels run)."""
    x, weight, b, grad = make_case(2, 17, 16, 5, 4, 1, seed=9)
    for actual, expected in zip(run_op(x, weight, b, grad, 1), reference(x, weight, b, grad, 1)):
        torch.testing.assert_close(actual.double(), expected, atol=1e-4, rtol=1e-4)
    assert launches == []


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 3, 3, 3), None, 1), ValueError, r"expected weight \[Cout, 4, 3, 3\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 1, 1), None, 1), ValueError, r"expected weight"),
        ((torch.zeros(4, 5, 5), torch.zeros(8, 4, 3, 3), None, 1), ValueError, r"expected input \[N, Cin, H, W\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3), torch.zeros(7), 1), ValueError, r"expected bias \[8\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3), None, 3), ValueError, "expected stride 1 or 2, got 3"),
        ((torch.zeros(2, 4, 5, 5).half(), torch.zeros(8, 4, 3, 3), None, 1), TypeError, "weight of the input's dtype"),
        ((torch.zeros(2, 4, 5, 5).int(), torch.zeros(8, 4, 3, 3).int(), None, 1), TypeError, "floating-point"),
    ],
)
def test_bad_input(interpreter, args, error, match):
    """The CUDA kernel checks as the CPU one does, with the same error types."""
    with pytest.raises(error, match=match):
        cuda_kernel("conv3x3", *args, True)
    with pytest.raises(error, match=match):
        torch.ops.msrcnn.conv3x3(*args, True)


# --- the launchers under the interpreter, with explicit tiles -----------------------------------


def tiles(block_m, block_n, block_k):
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k}, num_warps=1, num_stages=1)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    "config,splits",
    [
        # 16-wide K steps: two main channel blocks (Cin = 32 + 3), Cout = 24 = 1.5 blocks, so the
        # input-gradient kernel takes its uneven-K path; 2 splits of the weight gradient's pixels.
        (tiles(16, 16, 16), 2),
        # 32 x 64 tiles, 32-wide K: one main channel block, one partial Cout block; more splits
        # (4) than pixel blocks (35 pixels), so some splits are empty and must write zeros.
        (tiles(32, 64, 32), 4),
    ],
)
def test_launchers_with_explicit_tiles(interpreter, stride, config, splits, relu):
    x, weight, b, grad = make_case(1, 35, 24, 5, 7, stride, seed=4)
    y_ref, dx_ref, dw_ref, db_ref = reference(x, weight, b, grad, stride, relu)
    y = kernels.conv3x3_forward(x, weight, b, stride, relu=relu, config=config)
    assert_close32(y, y_ref)
    if relu:
        grad = torch.ops.aten.threshold_backward(grad, y, 0)  # the ReLU's part, as the op's autograd does
    dx = kernels.conv3x3_backward_input(grad, weight, stride, 5, 7, config=config)
    c_pad = kernels.padded_channels(35)  # 48: aligned channels-last rows, zero padding unused
    assert c_pad == 48 and dx.stride() == (5 * 7 * c_pad, 1, 7 * c_pad, c_pad)
    assert_close32(dx, dx_ref)
    wg_config = tiles(config.kwargs["BLOCK_N"], config.kwargs["BLOCK_M"], config.kwargs["BLOCK_K"])
    dw, db = kernels.conv3x3_backward_weight(grad, x, stride, config=wg_config, splits=splits)
    assert dw.is_contiguous()
    assert_close32(dw, dw_ref)
    assert_close32(db, db_ref)


def test_autotune_configs_and_switch(monkeypatch):
    a100_smem = 166912
    for kernel, configs in [
        ("forward", kernels.forward_configs()),
        ("backward_input", kernels.backward_input_configs()),
        ("backward_weight", kernels.backward_weight_configs()),
    ]:
        assert len(configs) >= 4
        for config in configs:
            blocks = [config.kwargs[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")]
            assert all(b >= 16 and b & (b - 1) == 0 for b in blocks)  # tl.dot: powers of two >= 16
            assert kernels.shared_memory_bytes(config, 2) <= kernels.H100_SHARED_MEMORY  # fp16 fits an H100
        assert kernels.default_config(kernel).kwargs == configs[0].kwargs
        # float32 on an A100: the first config that fits in its 163 KB
        fp32 = kernels.default_config(kernel, element_size=4, max_shared_memory=a100_smem)
        assert kernels.shared_memory_bytes(fp32, 4) <= a100_smem
        assert fp32 is not None and fp32.kwargs != configs[0].kwargs
        assert kernels.default_config(kernel, interpret=True).kwargs == {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32}
        # the autotuners' pre-filter, on an H100 budget (CPU tensors): float32 drops the big pipelines
        pruned = kernels._prune_configs(configs, {"x": torch.empty(1, dtype=torch.float32)})
        assert pruned == [c for c in configs if kernels.shared_memory_bytes(c, 4) <= kernels.H100_SHARED_MEMORY]
        assert 0 < len(pruned) <= len(configs)
    monkeypatch.delenv(kernels.AUTOTUNE_ENV, raising=False)
    assert kernels.autotune_enabled()
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv(kernels.AUTOTUNE_ENV, off)
        assert not kernels.autotune_enabled()


def test_split_heuristics():
    assert kernels.split_channels(257) == (256, 1)
    assert kernels.split_channels(256) == (256, 0)
    assert kernels.split_channels(5) == (0, 5)
    # 100 RoIs, 132 SMs (264 CTA slots): conv1 has 2 x 9 x (2 main + 1 tail) = 54 nominal tiles
    # -> 4 splits (216 CTAs), conv2 36 tiles -> 7 splits (252 CTAs): one wave each.
    assert kernels.weight_grad_splits(100 * 196, 256, 257, 132) == 4
    assert kernels.weight_grad_splits(100 * 196, 256, 256, 132) == 7
    assert kernels.weight_grad_splits(600, 256, 256, 132) == 1  # too few pixels to split
    assert kernels.weight_grad_splits(10**6, 256, 256, 1) == 1  # enough tiles already


# --- edge cases of the CUDA kernels (each was a defect once) --------------------------------


def test_backward_input_strides_match_the_fake(triton_on_cpu):
    """The Triton input gradient pads each pixel's channels to a multiple of 16 (17 -> 32); the
    kernel returns it dense channels-last, as the fake kernel (and the CPU kernel) say."""
    x, weight, _, grad = make_case(2, 17, 16, 5, 4, 1, seed=7)
    torch.library.opcheck(OPS["_conv3x3_backward_input"].default, (grad, weight, 1, 5, 4))


@pytest.mark.parametrize("shape", [(2, 3, 5, 0, 4), (2, 3, 0, 3, 4), (2, 0, 5, 3, 4)], ids=str)
def test_float64_empty_maps_and_no_channels(interpreter, shape):
    """float64 runs ATen's convolution on CUDA: empty maps, Cout = 0 and Cin = 0 (relu?(bias)) as
    the CPU kernel gives them."""
    n, c_in, c_out, h, w = shape
    x, weight, b, grad = make_case(n, c_in, c_out, h, w, 1, dtype=torch.float64)
    y = cuda_kernel("conv3x3", x, weight, b, 1, True)
    torch.testing.assert_close(y, torch.ops.msrcnn.conv3x3(x, weight, b, 1, True))
    assert y.shape == (n, c_out, h, w) and y.is_contiguous(memory_format=torch.channels_last)
    dx = cuda_kernel("_conv3x3_backward_input", grad, weight, 1, h, w)
    torch.testing.assert_close(dx, torch.ops.msrcnn._conv3x3_backward_input(grad, weight, 1, h, w))
    dw, db = cuda_kernel("_conv3x3_backward_weight", grad, x, 1)
    expected_dw, expected_db = torch.ops.msrcnn._conv3x3_backward_weight(grad, x, 1)
    torch.testing.assert_close(dw, expected_dw)
    torch.testing.assert_close(db, expected_db)


@pytest.mark.parametrize("c_in,c_out", [(0, 5), (3, 0)])
def test_weight_gradient_without_channels(interpreter, c_in, c_out):
    x, _, _, grad = make_case(2, c_in, c_out, 3, 4, 1)
    dw, db = cuda_kernel("_conv3x3_backward_weight", grad, x, 1)
    assert dw.shape == (c_out, c_in, 3, 3) and not dw.any() and db.shape == (c_out,)
    assert kernels.weight_grad_splits(24, c_out, c_in, 132) == 1


def test_the_cuda_kernels_are_registered_for_the_cuda_key():
    assert set(conv3x3_ops.CUDA_KERNELS) == {f"msrcnn::{name}" for name in OPS}
    for name in conv3x3_ops.CUDA_KERNELS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, torch._C.DispatchKey.CUDA)


@pytest.mark.parametrize("op,args", [
    ("_conv3x3_backward_input", lambda g, w, x: (g, w.to("meta"), 1, 5, 4)),
    ("_conv3x3_backward_weight", lambda g, w, x: (g, x.double(), 1)),
    ("_conv3x3_backward_weight", lambda g, w, x: (g, x, 3)),
])  # fmt: skip
def test_the_backward_kernels_check_their_arguments(interpreter, op, args):
    x, weight, _, grad = make_case(2, 3, 4, 5, 4, 1)
    with pytest.raises((ValueError, TypeError), match=f"msrcnn::{op}: expected"):
        cuda_kernel(op, *args(grad, weight, x))


# --- compiled kernels on a GPU -----------------------------------------------------------------


HEAD_LAYERS = [(257, 256, 1), (256, 256, 1), (256, 256, 2)]


@pytest.mark.cuda
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("c_in,c_out,stride", HEAD_LAYERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_aten(c_in, c_out, stride, dtype, relu, monkeypatch, launches):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, weight, b, grad = make_case(7, c_in, c_out, 14, 14, stride, seed=7)
    x, weight, b, grad = (t.cuda().to(dtype) for t in (x, weight, b, grad))
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # exact float32 for the comparison
    try:
        actual = run_op(x, weight, b, grad, stride, relu)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert launches == list(LAUNCHERS)  # the dispatcher sent the CUDA tensors to the Triton kernels
    expected_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    expected = reference(x, weight, b, grad, stride, relu, dtype=expected_dtype)
    for a, e in zip(actual, expected):
        assert a.dtype == dtype and a.is_cuda
        if dtype == torch.float32:
            torch.testing.assert_close(a.double(), e, atol=1e-4, rtol=1e-4)  # K = 2313 terms
        else:
            torch.testing.assert_close(a.float(), e, atol=1e-4, rtol=HALF_RTOL[dtype])


@pytest.mark.cuda
def test_cuda_autotune_off_and_on_agree_and_backward_is_deterministic(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, weight, b, grad = (t.cuda().half() for t in make_case(100, 257, 256, 14, 14, 1, seed=8))
    monkeypatch.setenv(kernels.AUTOTUNE_ENV, "0")
    fixed = run_op(x, weight, b, grad, 1)
    monkeypatch.setenv(kernels.AUTOTUNE_ENV, "1")
    tuned = run_op(x, weight, b, grad, 1)
    again = run_op(x, weight, b, grad, 1)
    for f, t, a in zip(fixed, tuned, again):
        torch.testing.assert_close(f.float(), t.float(), atol=1e-3, rtol=2 * 2**-11)
        assert torch.equal(t, a)  # split-K partials summed in a fixed order: bitwise repeatable


@pytest.mark.cuda
def test_cuda_opcheck_and_compile(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, weight, b, grad = (t.cuda() for t in make_case(3, 17, 32, 6, 6, 2, seed=9))
    for relu in (True, False):
        args = (x.clone().requires_grad_(), weight.clone().requires_grad_(), b.clone().requires_grad_(), 2, relu)
        torch.library.opcheck(torch.ops.msrcnn.conv3x3.default, args)
    torch.library.opcheck(torch.ops.msrcnn._conv3x3_backward_weight.default, (grad, x, 2))
    aligned = torch.randn(32, 32, 3, 3, device="cuda")  # (Cin = 17: test_backward_input_strides_match_the_fake)
    torch.library.opcheck(torch.ops.msrcnn._conv3x3_backward_input.default, (grad, aligned, 2, 6, 6))
    module = ops.Conv3x3(17, 32, stride=2, relu=True).cuda()
    compiled = torch.compile(module, fullgraph=True)
    torch.testing.assert_close(compiled(x), module(x))
