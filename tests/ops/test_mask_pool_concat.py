"""msrcnn_fast.ops.mask_pool_concat against the plain-PyTorch composition (ops/_reference.py).

Tolerances: float64 at 1e-12 (the only difference is exp's last bits: ATen's vectorised
sigmoid against expf/exp). float32 at 1e-6 absolute: sigmoid values in [0, 1] that differ by
a few ulps (2^-24 each), and gradients sigmoid'(x) * grad with |grad| <= ~4 for randn.
Half types are compared with the composition run in float32 on the same values, within the
output rounding of the type (2^-11 relative for float16, 2^-8 for bfloat16).
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from msrcnn_fast import ops
from msrcnn_fast.ops import _reference as ref

MODES = ["concat", "multiply", "concat_all"]


def make_inputs(n=6, channels=5, classes=4, size=14, mask=28, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, channels, size, size, generator=g).to(dtype)
    logits = (2 * torch.randn(n, classes, mask, mask, generator=g)).to(dtype)
    labels = torch.randint(0, classes, (n,), generator=g)
    return features, logits, labels


def grads(fn, features, logits, labels, mode, grad_out):
    f = features.detach().clone().requires_grad_()
    m = logits.detach().clone().requires_grad_()
    out = fn(f, m, labels, mode)
    return (out, *torch.autograd.grad(out, (f, m), grad_out))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("classes", [1, 4])
@pytest.mark.parametrize("size,mask", [(14, 28), (28, 28), (7, 28), (5, 15)])
def test_forward_and_gradients_match_reference_float64(cpu_capability, mode, classes, size, mask):
    features, logits, labels = make_inputs(classes=classes, size=size, mask=mask)
    expected = ref.mask_pool_concat(features, logits, labels, mode)
    grad_out = torch.randn(expected.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    ours = grads(ops.mask_pool_concat, features, logits, labels, mode, grad_out)
    theirs = grads(ref.mask_pool_concat, features, logits, labels, mode, grad_out)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert ours[0].is_contiguous()


@pytest.mark.parametrize("mode", MODES)
def test_float32(cpu_capability, mode):
    features, logits, labels = make_inputs(n=9, channels=21, dtype=torch.float32)
    shape = ref.mask_pool_concat(features, logits, labels, mode).shape
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    ours = grads(ops.mask_pool_concat, features, logits, labels, mode, grad_out)
    theirs = grads(ref.mask_pool_concat, features, logits, labels, mode, grad_out)
    for a, b in zip(ours, theirs):
        # rtol: multiply's mask gradient sums 21 products in another order (2^-24 per term).
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype,eps", [(torch.float16, 2**-11), (torch.bfloat16, 2**-8)])
@pytest.mark.parametrize("mode", MODES)
def test_half_types_compute_in_float32(cpu_capability, dtype, eps, mode):
    features, logits, labels = make_inputs(n=5, channels=19, dtype=dtype)
    grad_out = torch.randn(ref.mask_pool_concat(features, logits, labels, mode).shape).to(dtype)
    ours = grads(ops.mask_pool_concat, features, logits, labels, mode, grad_out)
    theirs = grads(ref.mask_pool_concat, features.float(), logits.float(), labels, mode, grad_out.float())
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        # multiply's mask gradient sums 19 products rounded once: its scale is the sum of |terms|.
        torch.testing.assert_close(a.float(), b, atol=4 * eps, rtol=2 * eps)


def test_reads_only_the_selected_class():
    features, logits, labels = make_inputs(classes=5)
    poisoned = logits.clone()
    for n, label in enumerate(labels.tolist()):
        poisoned[n, [k for k in range(5) if k != label]] = float("nan")
    torch.testing.assert_close(
        ops.mask_pool_concat(features, poisoned, labels), ops.mask_pool_concat(features, logits, labels), rtol=0, atol=0
    )


def test_ties_and_nan_follow_max_pool2d():
    # Integer logits: many windows with equal maxima; the gradient goes to the first of them.
    features, logits, labels = make_inputs(n=4, classes=3)
    logits = logits.round().clamp(-2, 2)
    logits[0, labels[0], 3, 5] = float("nan")  # propagates to its window, as in max_pool2d
    grad_out = torch.randn(4, 6, 14, 14, dtype=torch.float64)
    ours = grads(ops.mask_pool_concat, features, logits, labels, "concat", grad_out)
    theirs = grads(ref.mask_pool_concat, features, logits, labels, "concat", grad_out)
    assert ours[0][0, -1, 1, 2].isnan()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, equal_nan=True)


def test_no_rois_and_no_channels():
    features, logits, labels = make_inputs()
    for mode in MODES:
        out = ops.mask_pool_concat(features[:0], logits[:0], labels[:0], mode)
        assert out.shape == ref.mask_pool_concat(features[:0], logits[:0], labels[:0], mode).shape
    # C = 0: the pooled mask alone (Table 4e).
    alone = ops.mask_pool_concat(features[:, :0], logits, labels)
    torch.testing.assert_close(alone, ref.mask_pool_concat(features[:, :0], logits, labels), atol=1e-12, rtol=0)
    f = features[:0].clone().requires_grad_()
    m = logits[:0].clone().requires_grad_()
    ops.mask_pool_concat(f, m, labels[:0]).sum().backward()
    assert f.grad.shape == f.shape and m.grad.shape == m.shape


def test_non_contiguous_inputs():
    features, logits, labels = make_inputs(channels=8)
    f = features[:, ::2]
    m = logits.transpose(2, 3).contiguous().transpose(2, 3)
    for mode in MODES:
        torch.testing.assert_close(
            ops.mask_pool_concat(f, m, labels, mode), ref.mask_pool_concat(f, m, labels, mode), atol=1e-12, rtol=0
        )


def test_only_the_needed_gradients_are_computed():
    features, logits, labels = make_inputs()
    m = logits.clone().requires_grad_()
    ops.mask_pool_concat(features, m, labels).sum().backward()
    expected = logits.clone().requires_grad_()
    ref.mask_pool_concat(features, expected, labels).sum().backward()
    torch.testing.assert_close(m.grad, expected.grad, atol=1e-12, rtol=0)
    f = features.clone().requires_grad_()
    ops.mask_pool_concat(f, logits, labels, "multiply").sum().backward()
    fe = features.clone().requires_grad_()
    ref.mask_pool_concat(fe, logits, labels, "multiply").sum().backward()
    torch.testing.assert_close(f.grad, fe.grad, atol=1e-12, rtol=0)


def test_backward_is_deterministic_across_thread_counts():
    features, logits, labels = make_inputs(n=40, channels=16, dtype=torch.float32)
    grad_out = torch.randn(40, 16, 14, 14)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, max(2, threads)):
            torch.set_num_threads(count)
            results.append(grads(ops.mask_pool_concat, features, logits, labels, "multiply", grad_out))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_gradcheck():
    features, logits, labels = make_inputs(n=2, channels=2, classes=3, size=2, mask=4)
    features.requires_grad_()
    logits.requires_grad_()
    for mode in MODES:
        assert torch.autograd.gradcheck(
            lambda f, m, mode=mode: ops.mask_pool_concat(f, m, labels, mode), (features, logits)
        )


def test_by_element_bodies_match_reference():
    """The CUDA kernels' per-element code, run on the CPU, against the composition."""
    for classes in (1, 3):
        features, logits, labels = make_inputs(n=3, channels=4, classes=classes, size=7, mask=14)
        logits = logits.transpose(2, 3).contiguous().transpose(2, 3)  # strided
        for mode in MODES:
            expected = ref.mask_pool_concat(features, logits, labels, mode)
            actual = torch.ops.msrcnn_testing.mask_pool_concat_by_element(features, logits, labels, mode)
            torch.testing.assert_close(actual, expected, atol=1e-12, rtol=0)
            grad_out = torch.randn(expected.shape, dtype=torch.float64)
            _, grad_features, grad_logits = grads(ref.mask_pool_concat, features, logits, labels, mode, grad_out)
            actual_logits = torch.ops.msrcnn_testing.mask_pool_concat_backward_by_element(
                grad_out, logits, labels, features, mode
            )
            torch.testing.assert_close(actual_logits, grad_logits, atol=1e-12, rtol=0)
            if mode == "multiply":
                actual_features = torch.ops.msrcnn_testing.mask_pool_multiply_features_backward_by_element(
                    grad_out, logits, labels
                )
                torch.testing.assert_close(actual_features, grad_features, atol=1e-12, rtol=0)


def test_module():
    features, logits, labels = make_inputs()
    module = ops.MaskPoolConcat("multiply")
    assert repr(module) == "MaskPoolConcat(mode='multiply')"
    torch.testing.assert_close(
        module(features, logits, labels), ref.mask_pool_concat(features, logits, labels, "multiply"), atol=1e-12, rtol=0
    )


def test_opcheck():
    features, logits, labels = make_inputs(n=3, channels=3, classes=3, size=4, mask=8, dtype=torch.float32)
    features.requires_grad_()
    logits.requires_grad_()
    for mode in MODES:
        torch.library.opcheck(torch.ops.msrcnn.mask_pool_concat.default, (features, logits, labels, mode))
        out = ref.mask_pool_concat(features, logits, labels, mode)
        grad = torch.randn(out.shape)
        torch.library.opcheck(
            torch.ops.msrcnn._mask_pool_concat_backward.default,
            (grad, logits.detach(), labels, features.detach() if mode == "multiply" else None, mode),
        )
    torch.library.opcheck(torch.ops.msrcnn.mask_pool_concat.default, (features, logits[:, :1], None, "concat"))
    grad = torch.randn(features.shape)
    torch.library.opcheck(
        torch.ops.msrcnn._mask_pool_multiply_features_backward.default, (grad, logits.detach(), labels)
    )


def test_torch_compile_fullgraph():
    def head_input_energy(features, logits, labels):
        return ops.mask_pool_concat(features, logits, labels).square().mean(dim=(1, 2, 3))

    features, logits, labels = make_inputs(n=4, channels=3, dtype=torch.float32)
    compiled = torch.compile(head_input_energy, fullgraph=True, backend="inductor")
    torch.testing.assert_close(compiled(features, logits, labels), head_input_energy(features, logits, labels))
    f1, m1 = features.clone().requires_grad_(), logits.clone().requires_grad_()
    compiled(f1, m1, labels).sum().backward()
    f2, m2 = features.clone().requires_grad_(), logits.clone().requires_grad_()
    head_input_energy(f2, m2, labels).sum().backward()
    torch.testing.assert_close(f1.grad, f2.grad)
    torch.testing.assert_close(m1.grad, m2.grad)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda f, m, y: ops.mask_pool_concat(f[0], m, y), ValueError, r"roi_features of shape \[N, C, S, S\]"),
        (lambda f, m, y: ops.mask_pool_concat(f, m[0], y), ValueError, r"mask_logits of shape \[N, K, M, M\]"),
        (lambda f, m, y: ops.mask_pool_concat(f, m[:3], y), ValueError, "mask_logits for 6 RoIs"),
        (lambda f, m, y: ops.mask_pool_concat(f, m[..., :27, :27], y), ValueError, "multiple of the RoI feature size"),
        (lambda f, m, y: ops.mask_pool_concat(f, m.float(), y), TypeError, "one dtype"),
        (lambda f, m, y: ops.mask_pool_concat(f.long(), m, y), TypeError, "roi_features to be a floating-point"),
        (lambda f, m, y: ops.mask_pool_concat(f, m, None), ValueError, "expected labels"),
        (lambda f, m, y: ops.mask_pool_concat(f, m, y.int()), TypeError, "labels of dtype int64"),
        (lambda f, m, y: ops.mask_pool_concat(f, m, y[:2]), ValueError, r"labels of shape \[6\]"),
        (lambda f, m, y: ops.mask_pool_concat(f, m, y + 4), ValueError, r"labels\[0\] = \d+ is not a class"),
        (lambda f, m, y: ops.mask_pool_concat(f, m, y - 10), ValueError, "expected 0 <= label < 4"),
        (lambda f, m, y: ops.mask_pool_concat(f, m, y, "sum"), ValueError, "mode: expected one of"),
        (lambda f, m, y: torch.ops.msrcnn.mask_pool_concat(f, m, y, "sum"), ValueError, "got 'sum'"),
        (
            lambda f, m, y: torch.ops.msrcnn._mask_pool_concat_backward(f, m, y, None, "multiply"),
            ValueError,
            "roi_features in mode 'multiply'",
        ),
    ],
)
def test_bad_input(call, error, match):
    features, logits, labels = make_inputs()
    with pytest.raises(error, match=match):
        call(features, logits, labels)


@given(
    n=st.integers(0, 4),
    channels=st.integers(0, 6),
    classes=st.integers(1, 4),
    size=st.integers(1, 6),
    window=st.integers(1, 3),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_reference(n, channels, classes, size, window, mode, seed):
    features, logits, labels = make_inputs(n, channels, classes, size, size * window, seed=seed)
    expected = ref.mask_pool_concat(features, logits, labels, mode)
    grad_out = torch.randn(expected.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ours = grads(ops.mask_pool_concat, features, logits, labels, mode, grad_out)
    theirs = grads(ref.mask_pool_concat, features, logits, labels, mode, grad_out)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", MODES)
def test_cuda_matches_cpu(dtype, mode):
    features, logits, labels = make_inputs(n=20, channels=21, dtype=dtype)
    grad_out = torch.randn(ref.mask_pool_concat(features, logits, labels, mode).shape).to(dtype)
    expected = grads(ops.mask_pool_concat, features, logits, labels, mode, grad_out)
    actual = grads(ops.mask_pool_concat, features.cuda(), logits.cuda(), labels.cuda(), mode, grad_out.cuda())
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}.get(dtype, 1e-6)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a.cpu(), b, atol=tol, rtol=tol)


@pytest.mark.cuda
def test_cuda_opcheck():
    features, logits, labels = make_inputs(n=3, channels=3, classes=3, size=4, mask=8, dtype=torch.float32)
    features, logits, labels = features.cuda().requires_grad_(), logits.cuda().requires_grad_(), labels.cuda()
    for mode in MODES:
        torch.library.opcheck(torch.ops.msrcnn.mask_pool_concat.default, (features, logits, labels, mode))
