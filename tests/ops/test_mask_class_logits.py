"""msrcnn_fast.ops.mask_class_logits against its definition: the mask head's ConvTranspose 2x2
stride 2 + ReLU, then each RoI's class row of the 1x1 predictor (ATen, float64).

Tolerances: float64 agrees to rounding (1e-12 relative); float32 sums Cin products in another
order than ATen's convolution, ~1e-6 relative of the logits' scale; half inputs compute in
float32 and round the output once; bfloat16 rounds the GEMM's product to bfloat16 as well (CPU).
"""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from msrcnn_fast import ops


def definition(features, deconv_weight, deconv_bias, class_weight, class_bias):
    upsampled = torch.relu(F.conv_transpose2d(features, deconv_weight, deconv_bias, stride=2))
    n = features.shape[0]
    logits = torch.baddbmm(class_bias.reshape(n, 1, 1), class_weight.reshape(n, 1, -1), upsampled.flatten(2))
    return logits.reshape(n, 1, *upsampled.shape[2:])


def make_inputs(n, cin, cout, height, width, dtype=torch.float32, seed=0, memory_format=torch.channels_last):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, cin, height, width, generator=g, dtype=torch.float64)
    inputs = (
        features.contiguous(memory_format=memory_format),
        torch.randn(cin, cout, 2, 2, generator=g, dtype=torch.float64) / cin**0.5,
        torch.randn(cout, generator=g, dtype=torch.float64),
        torch.randn(n, cout, generator=g, dtype=torch.float64) / cout**0.5,
        torch.randn(n, generator=g, dtype=torch.float64),
    )
    return tuple(t.to(dtype) for t in inputs)


SHAPES = [
    # n, Cin, Cout, H, W
    (3, 16, 8, 5, 7),
    (2, 13, 11, 4, 3),  # channels not a multiple of a vector
    (1, 8, 24, 17, 17),  # 289 cells: more than one block of GEMM rows
    (4, 32, 16, 14, 14),
    (1, 1, 1, 1, 1),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_matches_definition_float64(cpu_capability, shape, memory_format):
    inputs = make_inputs(*shape, dtype=torch.float64, memory_format=memory_format)
    expected = definition(*inputs)
    got = ops.mask_class_logits(*inputs)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_element_body_matches_definition(shape):
    """The CUDA kernel's per-logit body (mask_class_logits_math.h), run on the CPU."""
    inputs = make_inputs(*shape, dtype=torch.float64)
    got = torch.ops.msrcnn_testing.mask_class_logits_by_element(*inputs)
    torch.testing.assert_close(got, definition(*inputs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_reduced_precision_matches_float64_definition(cpu_capability, dtype, tol):
    inputs = make_inputs(4, 64, 32, 14, 14, dtype=dtype)
    expected = definition(*(t.double() for t in inputs))
    got = ops.mask_class_logits(*inputs)
    assert got.dtype == dtype
    scale = expected.abs().max()
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=tol * scale)


def test_relu_applies_before_the_class_weights():
    """A bias that drives every upsampled feature negative leaves the class bias alone."""
    features, weight, _, class_weight, _ = make_inputs(2, 4, 3, 3, 3, dtype=torch.float64)
    bias = torch.full((3,), -1e6, dtype=torch.float64)
    class_bias = torch.tensor([0.25, -2.0], dtype=torch.float64)
    got = ops.mask_class_logits(features, weight, bias, class_weight, class_bias)
    assert torch.equal(got, class_bias.reshape(2, 1, 1, 1).expand(2, 1, 6, 6))


def test_nan_propagates_as_relu_does():
    inputs = list(make_inputs(2, 8, 8, 3, 3))
    inputs[0] = inputs[0].clone()
    inputs[0][1, :, 2, 0] = float("nan")
    got = ops.mask_class_logits(*inputs)
    expected = definition(*inputs)
    assert torch.equal(got.isnan(), expected.isnan()) and got.isnan().sum() == 4
    torch.testing.assert_close(got.nan_to_num(), expected.nan_to_num(), rtol=1e-5, atol=1e-5)


def test_no_rois():
    inputs = make_inputs(0, 8, 4, 14, 14)
    got = ops.mask_class_logits(*inputs)
    assert got.shape == (0, 1, 28, 28)


def test_gradcheck():
    inputs = tuple(t.requires_grad_() for t in make_inputs(2, 3, 4, 3, 2, dtype=torch.float64, seed=3))
    assert torch.autograd.gradcheck(ops.mask_class_logits, inputs)


def test_opcheck():
    torch.library.opcheck(torch.ops.msrcnn.mask_class_logits.default, make_inputs(2, 8, 4, 3, 3))


def test_flops_are_the_deconvolution_and_the_class_predictor():
    n, cin, cout, h, w = 3, 16, 8, 5, 7
    with FlopCounterMode(display=False) as counter:
        ops.mask_class_logits(*make_inputs(n, cin, cout, h, w))
    assert counter.get_total_flops() == 2 * n * (2 * h) * (2 * w) * cout * (cin + 1)


@pytest.mark.parametrize(
    "index, value, match",
    [
        (1, torch.zeros(16, 8, 3, 3), "deconv_weight of shape \\[16, C, 2, 2\\]"),
        (1, torch.zeros(15, 8, 2, 2), "deconv_weight of shape \\[16, C, 2, 2\\]"),
        (2, torch.zeros(7), "deconv_bias of shape \\[8\\]"),
        (3, torch.zeros(2, 8), "class_weight of shape \\[3, 8\\]"),
        (4, torch.zeros(4), "class_bias of shape \\[3\\]"),
        (0, torch.zeros(3, 16, 5), "features to have 4 dimensions"),
    ],
)
def test_bad_shapes_name_the_argument(index, value, match):
    inputs = list(make_inputs(3, 16, 8, 5, 7))
    inputs[index] = value
    with pytest.raises(ValueError, match=match):
        ops.mask_class_logits(*inputs)


def test_bad_dtypes_name_the_argument():
    inputs = list(make_inputs(3, 16, 8, 5, 7))
    with pytest.raises(TypeError, match="class_bias of the features' dtype"):
        ops.mask_class_logits(*inputs[:4], inputs[4].double())
    with pytest.raises(TypeError, match="features to be a floating-point tensor"):
        ops.mask_class_logits(inputs[0].long(), *inputs[1:])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float16, 2e-3)])
def test_cuda_matches_definition(dtype, tol):
    inputs = make_inputs(4, 64, 32, 14, 14, dtype=dtype)
    expected = definition(*(t.double() for t in inputs))
    got = ops.mask_class_logits(*(t.cuda() for t in inputs)).cpu()
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=tol * expected.abs().max())
    torch.library.opcheck(torch.ops.msrcnn.mask_class_logits.default, tuple(t.cuda() for t in inputs))
