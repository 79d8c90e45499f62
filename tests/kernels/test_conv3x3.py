"""The Triton 3x3 convolution kernels (msrcnn_fast.kernels.conv3x3) and their ops, against
``F.conv2d`` + ReLU and its autograd.

Here (no GPU) the kernels run under the Triton interpreter on small shapes: a few RoIs, 16-35
input channels (the 256 + 1 split of the MaskIoU head's first layer is 16 + 1 here), odd map
sizes, 16- or 32-wide tiles so that every tile kind is partial somewhere. The compiled kernels
run in the tests marked ``cuda`` (skipped without a GPU).

Tolerances. float32 is compared with a float64 reference of the same values: the kernels
accumulate in float32 in their own order, |error| <~ sqrt(K) * 2^-24 * sum|terms| with K <= 315
terms of size <~ 1 here, i.e. about 1e-6; 1e-5 (atol and rtol) leaves a margin and is still four
orders of magnitude below what a wrong tap, channel or pixel gives (O(0.1)). float16/bfloat16
are compared with the float32 reference of the same (rounded) values: the kernels accumulate in
float32 and round once, so the error is one rounding of the result, u = 2^-11 (float16) or 2^-8
(bfloat16) relative; rtol = 2u, atol = 1e-5 for the float32 accumulation.
"""

import pytest
import torch
import torch.nn.functional as F
import triton
from msrcnn_fast.kernels import conv3x3 as kernels

from msrcnn_fast import ops
from msrcnn_fast.ops import conv3x3 as conv3x3_ops
from tests.compiled import assert_compiled_matches_eager

ATOL32 = RTOL32 = 1e-5
HALF_RTOL = {torch.float16: 2 * 2**-11, torch.bfloat16: 2 * 2**-8}


def make_case(n, c_in, c_out, h, w, stride, dtype=torch.float32, seed=0, bias=True):
    """Input, weight (Kaiming-like scale, so outputs are O(1)), bias and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g)
    weight = torch.randn(c_out, c_in, 3, 3, generator=g) / (9 * c_in) ** 0.5
    b = 0.1 * torch.randn(c_out, generator=g) if bias else None
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    grad = torch.randn(n, c_out, ho, wo, generator=g)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    return cast(x), cast(weight), cast(b), cast(grad)


def reference(x, weight, b, grad, stride, dtype=torch.float64):
    """relu(conv2d) and the gradients of (input, weight, bias), computed in ``dtype``."""
    leaves = [None if t is None else t.detach().to(dtype).requires_grad_() for t in (x, weight, b)]
    y = torch.relu(F.conv2d(leaves[0], leaves[1], leaves[2], stride, 1))
    y.backward(grad.to(dtype))
    return y.detach(), *(None if t is None else t.grad for t in leaves)


def run_op(x, weight, b, grad, stride):
    """The op through autograd: output and the gradients of (input, weight, bias)."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (x, weight, b)]
    y = ops.conv3x3_bias_relu(leaves[0], leaves[1], leaves[2], stride, backend="triton")
    y.backward(grad)
    return y.detach(), *(None if t is None else t.grad for t in leaves)


def assert_close32(actual, expected):
    torch.testing.assert_close(actual.double(), expected.double(), atol=ATOL32, rtol=RTOL32)


# --- the ops under the interpreter -----------------------------------------------------------


@pytest.mark.parametrize(
    "c_in,c_out,h,w,stride",
    [
        (17, 24, 7, 5, 1),  # 16 + 1 channels: the 256 + 1 split of the MaskIoU head's first conv
        (17, 24, 7, 5, 2),  # stride 2 on odd sizes: parity classes of 4x3, 4x2, 3x3 and 3x2 pixels
        (32, 20, 6, 6, 2),  # no tail channel; Cout not a multiple of the tile
        (5, 16, 4, 3, 1),  # tail channels only (Cin < 16)
    ],
)
def test_forward_and_gradients_match_aten(interpreter, c_in, c_out, h, w, stride):
    x, weight, b, grad = make_case(2, c_in, c_out, h, w, stride)
    y, dx, dw, db = run_op(x, weight, b, grad, stride)
    y_ref, dx_ref, dw_ref, db_ref = reference(x, weight, b, grad, stride)
    assert 0.2 < (y_ref > 0).double().mean() < 0.8  # the ReLU mask matters in the backward
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close32(y, y_ref)
    assert_close32(dx, dx_ref)
    assert_close32(dw, dw_ref)
    assert_close32(db, db_ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("stride", [1, 2])
def test_half_types_accumulate_in_float32(interpreter, dtype, stride):
    x, weight, b, grad = make_case(2, 17, 24, 6, 5, stride, dtype=dtype, seed=1)
    actual = run_op(x, weight, b, grad, stride)
    expected = reference(x, weight, b, grad, stride, dtype=torch.float32)
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), e, atol=1e-5, rtol=HALF_RTOL[dtype])


def test_layouts_and_no_bias(interpreter):
    x, weight, _, grad = make_case(2, 18, 16, 5, 6, 1, seed=2, bias=False)
    y_ref, dx_ref, dw_ref, _ = reference(x, weight, None, grad, 1)
    for layout in (x, x.contiguous(memory_format=torch.channels_last)):
        assert_close32(ops.conv3x3_bias_relu(layout, weight, None, backend="triton"), y_ref)
    wide = torch.randn(2, 40, 5, 6)
    wide[:, 3:39:2] = x
    y, dx, dw, db = run_op(wide[:, 3:39:2], weight, None, grad, 1)  # a strided view of another tensor
    assert db is None
    assert_close32(y, y_ref)
    assert_close32(dx, dx_ref)
    assert_close32(dw, dw_ref)


def test_input_gradient_alone(interpreter, monkeypatch):
    """Frozen weight and bias: only the input-gradient kernel runs."""
    calls = []
    monkeypatch.setattr(conv3x3_ops, "conv3x3_backward_weight", lambda *a: calls.append(a))
    x, weight, b, grad = make_case(1, 17, 16, 5, 5, 2, seed=3)
    xr = x.clone().requires_grad_()
    ops.conv3x3_bias_relu(xr, weight, b, 2, backend="triton").backward(grad)
    assert_close32(xr.grad, reference(x, weight, b, grad, 2)[1])
    assert calls == []


def test_cpu_tensors_run_the_kernels_only_under_the_interpreter(monkeypatch):
    """TRITON_INTERPRET=1 sends CPU tensors through the Triton kernels, otherwise through ATen;
    float64 always goes to ATen."""
    calls = []
    original = conv3x3_ops.conv3x3_forward
    monkeypatch.setattr(conv3x3_ops, "conv3x3_forward", lambda *a: calls.append(1) or original(*a))
    x, weight, b, _ = make_case(1, 3, 16, 3, 3, 1)
    expected = torch.relu(F.conv2d(x, weight, b, 1, 1))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert_close32(ops.conv3x3_bias_relu(x, weight, b, backend="triton"), expected)
    assert calls == []
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.interpreting()
    assert_close32(ops.conv3x3_bias_relu(x, weight, b, backend="triton"), expected)
    assert calls == [1]
    ops.conv3x3_bias_relu(x.double(), weight.double(), b.double(), backend="triton")
    assert calls == [1]


# --- the launchers under the interpreter, with explicit tiles -----------------------------------


def tiles(block_m, block_n, block_k):
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k}, num_warps=1, num_stages=1)


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
def test_launchers_with_explicit_tiles(interpreter, stride, config, splits):
    x, weight, b, grad = make_case(1, 35, 24, 5, 7, stride, seed=4)
    y_ref, dx_ref, dw_ref, db_ref = reference(x, weight, b, grad, stride)
    y = kernels.conv3x3_forward(x, weight, b, stride, config=config)
    assert_close32(y, y_ref)
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


def test_tiny_maps_and_empty_batch(interpreter):
    """1x1 and 2x1 maps (every tap but the centre one falls in the padding) and zero RoIs."""
    for h, w, stride in [(1, 1, 1), (2, 1, 2)]:
        x, weight, b, grad = make_case(3, 17, 16, h, w, stride, seed=5)
        for actual, expected in zip(run_op(x, weight, b, grad, stride), reference(x, weight, b, grad, stride)):
            assert_close32(actual, expected)
    x, weight, b, grad = make_case(0, 17, 16, 4, 4, 2)
    y, dx, dw, db = run_op(x, weight, b, grad, 2)
    assert y.shape == (0, 16, 2, 2) and dx.shape == x.shape
    assert not dw.any() and not db.any()


# --- the ops' other paths, registration and tooling ---------------------------------------------


def test_aten_path_and_opcheck():
    """Without the interpreter CPU tensors take ATen's convolution; the schemas, fake kernels
    (the triton_op bodies themselves) and autograd registration are checked on that path.
    (opcheck cannot run under the interpreter: its fake-tensor test sees the copies the
    interpreter makes of the storages.)"""
    x, weight, b, grad = make_case(2, 17, 16, 5, 4, 2, seed=6)
    for actual, expected in zip(run_op(x, weight, b, grad, 2), reference(x, weight, b, grad, 2)):
        assert_close32(actual, expected)
    args = (x.requires_grad_(), weight.requires_grad_(), b.requires_grad_(), 2)
    torch.library.opcheck(torch.ops.msrcnn.conv3x3_bias_relu.default, args)
    y = torch.ops.msrcnn.conv3x3_bias_relu(*args).detach()
    grad = torch.ops.aten.threshold_backward(grad, y, 0)
    torch.library.opcheck(torch.ops.msrcnn._conv3x3_backward_input.default, (grad, weight.detach(), 2, 5, 4))
    torch.library.opcheck(torch.ops.msrcnn._conv3x3_backward_weight.default, (grad, x.detach(), 2))


def test_torch_compile_fullgraph():
    module = ops.Conv3x3ReLU(17, 16, stride=2, backend="triton")
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 17, 5, 5, requires_grad=True)
    assert_compiled_matches_eager(module, compiled, x)


def test_module_is_a_conv2d_with_relu():
    module = ops.Conv3x3ReLU(8, 12, stride=2, backend="aten")
    assert isinstance(module, torch.nn.Conv2d) and module.padding == (1, 1) and module.kernel_size == (3, 3)
    assert "backend='aten'" in repr(module)
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(module(x), torch.relu(torch.nn.Conv2d.forward(module, x)))
    assert set(module.state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("backend", ["auto", "winograd"])
def test_cpu_winograd_backend_matches_conv2d_relu(backend, stride):
    torch.manual_seed(0)
    module = ops.Conv3x3ReLU(9, 12, stride=stride, backend=backend)
    x = torch.randn(3, 9, 11, 13, requires_grad=True)
    reference = torch.nn.Conv2d(9, 12, 3, stride=stride, padding=1)
    reference.load_state_dict(module.state_dict())
    actual, expected = module(x), torch.relu(reference(x))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    grads = torch.autograd.grad(actual, [x, module.weight, module.bias], grad)
    grads_expected = torch.autograd.grad(expected, [x, reference.weight, reference.bias], grad)
    for g, e in zip(grads, grads_expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_backend_resolution():
    assert ops.conv3x3.resolve_backend("auto", "cpu") == "winograd"
    assert ops.conv3x3.resolve_backend("auto", "meta") == "aten"
    assert ops.conv3x3.resolve_backend("auto", torch.device("cuda")) == "triton"
    assert ops.conv3x3.resolve_backend("aten", "cuda") == "aten"
    assert ops.conv3x3.resolve_backend("triton", "cpu") == "triton"
    with pytest.raises(ValueError, match="backend: expected one of 'auto', 'triton', 'winograd', 'aten', got 'cudnn'"):
        ops.conv3x3.resolve_backend("cudnn", "cpu")
    with pytest.raises(ValueError, match="backend"):
        ops.Conv3x3ReLU(4, 4, backend="cudnn")
    with pytest.raises(ValueError, match="stride: expected 1 or 2, got 3"):
        ops.Conv3x3ReLU(4, 4, stride=3)


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 3, 3, 3), None, 1), ValueError, r"expected weight \[Cout, 4, 3, 3\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 1, 1), None, 1), ValueError, r"expected weight"),
        ((torch.zeros(4, 5, 5), torch.zeros(8, 4, 3, 3), None, 1), ValueError, r"expected input \[N, Cin, H, W\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3), torch.zeros(7), 1), ValueError, r"expected bias \[8\]"),
        ((torch.zeros(2, 4, 5, 5), torch.zeros(8, 4, 3, 3), None, 3), ValueError, "expected stride 1 or 2, got 3"),
        ((torch.zeros(2, 4, 5, 5).half(), torch.zeros(8, 4, 3, 3), None, 1), TypeError, "weight of the input's dtype"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        torch.ops.msrcnn.conv3x3_bias_relu(*args)
    with pytest.raises(error, match=match):  # every backend checks the same
        ops.conv3x3_bias_relu(*args[:3], stride=args[3], backend="aten")


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


# --- compiled kernels on a GPU -----------------------------------------------------------------


HEAD_LAYERS = [(257, 256, 1), (256, 256, 1), (256, 256, 2)]


@pytest.mark.cuda
@pytest.mark.parametrize("c_in,c_out,stride", HEAD_LAYERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_aten(c_in, c_out, stride, dtype, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, weight, b, grad = make_case(7, c_in, c_out, 14, 14, stride, seed=7)
    x, weight, b, grad = (t.cuda().to(dtype) for t in (x, weight, b, grad))
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # exact float32 for the comparison
    try:
        actual = run_op(x, weight, b, grad, stride)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    expected = reference(x, weight, b, grad, stride, dtype=torch.float64 if dtype == torch.float32 else torch.float32)
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
    args = (x.requires_grad_(), weight.requires_grad_(), b.requires_grad_(), 2)
    torch.library.opcheck(torch.ops.msrcnn.conv3x3_bias_relu.default, args)
    module = ops.Conv3x3ReLU(17, 32, stride=2).cuda()
    compiled = torch.compile(module, fullgraph=True)
    torch.testing.assert_close(compiled(x), module(x))
