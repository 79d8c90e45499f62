"""msrcnn::group_norm_relu against F.relu(F.group_norm(...)): forward and gradients in every CPU
build this machine runs, float64 (ATen's, the reference), half types (float32 inside), empty
inputs, bad input, opcheck, torch.compile; CUDA against the CPU where there is a GPU."""

import pytest
import torch
import torch.nn.functional as F

from msrcnn_fast.ops import GroupNormReLU, group_norm_relu

CASES = [
    # shape, groups, relu, channels-last
    ((256, 64, 7, 7), 32, True, True),
    ((2, 64, 48, 64), 32, False, True),
    ((3, 48, 5, 9), 4, True, False),
    ((2, 20, 6, 6), 5, True, True),  # 20 channels: a partial last vector
    ((1, 8, 1, 1), 2, False, True),
]


def reference(x, groups, w, b, eps, relu):
    y = F.group_norm(x, groups, w, b, eps)
    return F.relu(y) if relu else y


def inputs(shape, channels_last=True, offset=0.0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + offset
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(shape[1], generator=g, dtype=torch.float64)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64)
    grad = torch.randn(shape, generator=g, dtype=torch.float64)
    return x.to(dtype), w.to(dtype), b.to(dtype), grad.to(dtype)


def grads(fn, x, w, b, grad, *args):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = fn(x, *args[:1], w, b, *args[1:])
    return (y, *torch.autograd.grad(y, (x, w, b), grad))


@pytest.mark.parametrize("shape,groups,relu,channels_last", CASES)
def test_forward_and_gradients_match_group_norm_and_relu(cpu_capability, shape, groups, relu, channels_last):
    x, w, b, grad = inputs(shape, channels_last)
    got = grads(group_norm_relu, x, w, b, grad, groups, 1e-5, relu)
    want = grads(reference, x.double(), w.double(), b.double(), grad.double(), groups, 1e-5, relu)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for h, e in zip(got, want):
        torch.testing.assert_close(h.double(), e, rtol=1e-5, atol=1e-5 * e.abs().max().item())


def test_statistics_keep_their_digits_far_from_zero_mean(cpu_capability):
    """Maps at mean 1000 and std 2: the float64 GroupNorm is the truth; ATen's float32 is off by ~1e-2."""
    x, w, b, grad = inputs((2, 20, 6, 6), offset=1000.0)
    got = grads(group_norm_relu, x, w, b, grad, 5, 1e-5, True)
    want = grads(reference, x.double(), w.double(), b.double(), grad.double(), 5, 1e-5, True)
    for h, e in zip(got, want):
        assert ((h.double() - e).abs().max() / e.abs().max()).item() < 2e-5


def test_float64_is_atens_and_passes_gradcheck():
    x, w, b, _ = inputs((2, 6, 3, 4), dtype=torch.float64)
    for relu in (False, True):
        torch.testing.assert_close(group_norm_relu(x, 3, w, b, 1e-5, relu), reference(x, 3, w, b, 1e-5, relu))
        args = (x.requires_grad_(), 3, w.requires_grad_(), b.requires_grad_(), 1e-5, relu)
        assert torch.autograd.gradcheck(group_norm_relu, args)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_types_compute_in_float32(dtype, tol):
    x, w, b, grad = inputs((4, 16, 5, 5), dtype=dtype)
    got = grads(group_norm_relu, x, w, b, grad, 4, 1e-5, True)
    want = grads(reference, x.float(), w.float(), b.float(), grad.float(), 4, 1e-5, True)
    for h, e in zip(got, want):
        assert h.dtype == dtype
        torch.testing.assert_close(h.float(), e, rtol=tol, atol=tol * e.abs().max().item())


def test_without_weight_and_bias():
    x, _, _, grad = inputs((2, 8, 4, 4))
    torch.testing.assert_close(group_norm_relu(x, 2), F.relu(F.group_norm(x, 2)), rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_()
    group_norm_relu(xg, 2, relu=False).backward(grad)
    xr = x.clone().requires_grad_()
    F.group_norm(xr, 2).backward(grad)
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(0, 8, 4, 4), (2, 8, 0, 3), (2, 0, 4, 4)])
def test_empty_inputs(shape):
    x = torch.randn(shape).requires_grad_()
    groups = 2 if shape[1] else 1
    w = torch.ones(shape[1], requires_grad=True)
    y = group_norm_relu(x, groups, w, None)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


def backward(grad, mean, rstd):
    """The backward op called directly on a [2, 6, 3, 3] input in 3 groups."""
    x = torch.randn(2, 6, 3, 3)
    return torch.ops.msrcnn._group_norm_relu_backward(grad, x, x, mean, rstd, None, 3, True)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: group_norm_relu(torch.randn(2, 6, 3, 3), 4), ValueError, "num_groups"),
        (lambda: group_norm_relu(torch.randn(2, 6, 3, 3), 0), ValueError, "num_groups"),
        (lambda: group_norm_relu(torch.randn(2, 6, 3, 3), 3, torch.ones(5)), ValueError, "weight"),
        (lambda: group_norm_relu(torch.randn(2, 6, 3, 3), 3, None, torch.ones(2, 3)), ValueError, "bias"),
        (lambda: group_norm_relu(torch.randn(2, 6, 3, 3), 3, torch.ones(6, dtype=torch.float64)), TypeError, "weight"),
        (lambda: group_norm_relu(torch.randn(6, 3, 3), 3), ValueError, "input"),
        (lambda: group_norm_relu(torch.ones(2, 6, 3, 3, dtype=torch.int64), 3), TypeError, "input"),
        (lambda: group_norm_relu(torch.randn(2, 6, 3, 3), 3, eps=-1.0), ValueError, "eps"),
        (
            lambda: backward(torch.randn(2, 6, 3, 4), torch.zeros(2, 3), torch.zeros(2, 3)),
            ValueError,
            "grad and output",
        ),
        (lambda: backward(torch.randn(2, 6, 3, 3), torch.zeros(2, 2), torch.zeros(2, 2)), ValueError, "mean and rstd"),
        (lambda: backward(torch.randn(2, 6, 3, 3), torch.zeros(2, 3), torch.zeros(3, 3)), ValueError, "mean and rstd"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_module_keeps_group_norms_state_dict():
    gn = torch.nn.GroupNorm(4, 16)
    fused = GroupNormReLU(4, 16)
    assert fused.state_dict().keys() == gn.state_dict().keys()
    fused.load_state_dict(gn.state_dict())
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(fused(x), F.relu(gn(x)), rtol=1e-5, atol=1e-5)
    assert "relu=True" in repr(fused)


def test_opcheck():
    x, w, b, grad = inputs((3, 8, 4, 5))
    for relu in (False, True):
        args = (x.clone().requires_grad_(), 4, w.clone().requires_grad_(), b.clone().requires_grad_(), 1e-5, relu)
        torch.library.opcheck(torch.ops.msrcnn.group_norm_relu.default, args)
        y, mean, rstd = torch.ops.msrcnn.group_norm_relu(x, 4, w, b, 1e-5, relu)
        torch.library.opcheck(torch.ops.msrcnn._group_norm_relu_backward.default, (grad, x, y, mean, rstd, w, 4, relu))


def test_torch_compile_fullgraph():
    def energy(x, w, b):
        return group_norm_relu(x, 4, w, b).square().mean()

    x, w, b, _ = inputs((2, 8, 5, 5))
    compiled = torch.compile(energy, fullgraph=True, backend="inductor")
    torch.testing.assert_close(compiled(x, w, b), energy(x, w, b))
    x1 = x.clone().requires_grad_()
    compiled(x1, w, b).backward()
    x2 = x.clone().requires_grad_()
    energy(x2, w, b).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_cuda_matches_cpu(dtype):
    x, w, b, grad = inputs((6, 32, 7, 7), dtype=dtype)
    expected = grads(group_norm_relu, x, w, b, grad, 8, 1e-5, True)
    actual = grads(group_norm_relu, x.cuda(), w.cuda(), b.cuda(), grad.cuda(), 8, 1e-5, True)
    tol = {torch.float16: 2e-3}.get(dtype, 1e-5)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.cpu(), e, rtol=tol, atol=tol * e.abs().max().item())
