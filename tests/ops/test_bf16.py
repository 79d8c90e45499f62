"""Inference in bfloat16 (ops.bf16; the model's bf16_inference): InferenceBf16Linear, Conv3x3's
stride-2 convolution and the mask head's class logits take bfloat16 where that pays
(build_info()["bf16_dot"]: AMD with AVX-512 BF16) and nowhere else, never while autograd records
or torch.export traces, same parameters."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import msrcnn_fast
from msrcnn_fast import _C, ops
from msrcnn_fast.model import msrcnn_resnet18_fpn
from msrcnn_fast.model.box_head import BoxHead
from msrcnn_fast.model.mask_head import MaskHead
from msrcnn_fast.model.maskiou_head import MaskIoUHead
from msrcnn_fast.ops import Conv3x3
from msrcnn_fast.ops.bf16 import InferenceBf16Linear

needs_bf16 = pytest.mark.skipif(
    not _C.bf16_dot_in_use(),
    reason=f"not an AMD CPU with AVX-512 BF16, or MSRCNN_CPU_CAPABILITY below avx512 ({_C.cpu_capability()})",
)


def layers(seed=0, in_features=3136, out_features=256):
    torch.manual_seed(seed)
    ours = InferenceBf16Linear(in_features, out_features)
    plain = nn.Linear(in_features, out_features)
    plain.load_state_dict(ours.state_dict())
    return ours, plain, torch.randn(300, in_features).relu()


def test_build_info_says_whether_bf16_dot_is_used():
    info = msrcnn_fast.build_info()
    assert info["bf16_dot"] is _C.bf16_dot_in_use()
    if info["cpu_capability"] != "avx512":
        assert info["bf16_dot"] is False


def test_float32_while_autograd_records():
    ours, plain, x = layers()
    x.requires_grad_(True)
    y = ours(x)
    torch.testing.assert_close(y, plain(x), rtol=0, atol=0)
    y.sum().backward()
    assert ours.weight.grad is not None and x.grad is not None


@needs_bf16
def test_bfloat16_at_inference():
    """No autograd recording: the product of bf16-rounded inputs and weights, rounded to bf16,
    plus the float32 bias; within bf16's rounding of float32's result, and not equal to it."""
    ours, plain, x = layers()
    with torch.no_grad():
        y, expected = ours(x), plain(x)
    assert y.dtype == torch.float32
    by_definition = F.linear(x.bfloat16(), ours.weight.bfloat16()).float() + ours.bias
    torch.testing.assert_close(y, by_definition, rtol=0, atol=0)
    scale = expected.abs().max().item()
    assert (y - expected).abs().max().item() < 2e-2 * scale
    assert not torch.equal(y, expected)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), by_definition, rtol=0, atol=0)


@needs_bf16
def test_float32_below_avx512_or_off_the_cpu_dtype():
    """MSRCNN_CPU_CAPABILITY / set_cpu_capability below avx512 keeps float32, as does a float64 input."""
    ours, plain, x = layers()
    before = _C.cpu_capability()
    try:
        _C.set_cpu_capability("avx2")
        assert not msrcnn_fast.build_info()["bf16_dot"]
        with torch.no_grad():
            torch.testing.assert_close(ours(x), plain(x), rtol=0, atol=0)
    finally:
        _C.set_cpu_capability(before)
    with torch.no_grad():
        torch.testing.assert_close(ours.double()(x.double()), plain.double()(x.double()), rtol=0, atol=0)


def test_box_head_keeps_torchvision_parameter_names():
    bf16, plain = BoxHead(in_channels=8, fc_dim=32, bf16_inference=True), BoxHead(in_channels=8, fc_dim=32)
    assert type(bf16.fc6) is InferenceBf16Linear and type(plain.fc6) is nn.Linear
    assert list(bf16.state_dict()) == list(plain.state_dict()) == ["fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"]


@pytest.mark.parametrize("bf16_inference", [True, False])
def test_factory_option(bf16_inference):
    """The box head's FCs, the mask head's class logits, the MaskIoU head's first two FCs and its
    stride-2 conv; nothing else."""
    model = msrcnn_resnet18_fpn(num_classes=3, bf16_inference=bf16_inference)
    box, maskiou = model.roi_heads.box_head, model.roi_heads.maskiou_head
    expected = InferenceBf16Linear if bf16_inference else nn.Linear
    assert type(box.fc6) is expected and type(box.fc7) is expected
    assert type(maskiou.fc1) is expected and type(maskiou.fc2) is expected and type(maskiou.predictor) is nn.Linear
    assert model.roi_heads.mask_head.bf16_inference is bf16_inference
    taken = [name for name, m in model.named_modules() if isinstance(m, Conv3x3) and m.bf16_inference]
    assert taken == (["roi_heads.maskiou_head.convs.3"] if bf16_inference else [])
    assert MaskIoUHead(bf16_inference=True).convs[3].stride == (2, 2)


def conv_case(stride, seed=0):
    torch.manual_seed(seed)
    conv = Conv3x3(24, 16, stride=stride, relu=True, bf16_inference=True)
    conv.bias.data.uniform_(-0.5, 0.5)
    return conv, torch.randn(3, 24, 14, 14).contiguous(memory_format=torch.channels_last)


@needs_bf16
def test_stride_2_conv_in_bfloat16_at_inference():
    """ATen's bfloat16 convolution of the rounded input and weight, then the float32 bias and
    the ReLU; within bf16's rounding of the float32 convolution; float32 while autograd records."""
    conv, x = conv_case(stride=2)
    expected = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1).relu()
    with torch.no_grad():
        y = conv(x)
        by_definition = (
            F.conv2d(x.bfloat16(), conv.weight.bfloat16(), stride=2, padding=1).float() + conv.bias[:, None, None]
        ).relu()
    assert y.dtype == torch.float32 and y.shape == (3, 16, 7, 7)
    torch.testing.assert_close(y, by_definition, rtol=0, atol=0)
    assert (y - expected).abs().max().item() < 2e-2 * expected.abs().max().item()
    assert not torch.equal(y, expected.detach())
    recorded = conv(x)  # parameters require grad: float32 on msrcnn::conv3x3
    torch.testing.assert_close(recorded, expected, rtol=1e-4, atol=1e-4)
    assert not torch.equal(recorded, by_definition)


@needs_bf16
def test_stride_1_conv_stays_on_winograd():
    conv, x = conv_case(stride=1)
    with torch.no_grad():
        y = conv(x)
        conv.bf16_inference = False
        torch.testing.assert_close(y, conv(x), rtol=0, atol=0)


def test_float32_when_traced():
    """torch.export (and torch.compile) trace the float32 product: a program does not depend on
    the CPU it was exported on."""
    ours, _, x = layers()
    ours.requires_grad_(False)
    program = torch.export.export(ours, (x,), strict=False)
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert targets == ["aten.linear.default"]


def mask_head_case(seed=0):
    torch.manual_seed(seed)
    head = MaskHead(num_classes=5, in_channels=32, conv_dim=32, num_convs=1, bf16_inference=True)
    for p in head.parameters():
        nn.init.uniform_(p, -0.2, 0.2)
    x = torch.randn(6, 32, 14, 14).contiguous(memory_format=torch.channels_last)
    return head, x, torch.tensor([1, 4, 2, 2, 3, 1])


@needs_bf16
def test_mask_class_logits_in_bfloat16_at_inference():
    """MaskHead.class_logits: mask_class_logits on the bfloat16-rounded arguments, returned in
    float32; within bf16's rounding of the float32 logits; float32 while autograd records."""
    head, x, labels = mask_head_case()
    with torch.no_grad():
        y = head.class_logits(x, labels)
        features = head.convs(x)
        args = (features, head.deconv.weight, head.deconv.bias, head.predictor.weight[labels, :, 0, 0])
        by_definition = ops.mask_class_logits(*(t.bfloat16() for t in (*args, head.predictor.bias[labels]))).float()
        head.bf16_inference = False
        expected = head.class_logits(x, labels)
        head.bf16_inference = True
    assert y.dtype == torch.float32 and y.shape == (6, 1, 28, 28)
    torch.testing.assert_close(y, by_definition, rtol=0, atol=0)
    assert (y - expected).abs().max().item() < 3e-2 * expected.abs().max().item()
    assert not torch.equal(y, expected)
    torch.testing.assert_close(head.class_logits(x, labels), expected, rtol=1e-5, atol=1e-5)


@needs_bf16
def test_mask_class_logits_bfloat16_gemm_rounds_its_product():
    """The op's bfloat16 CPU path: the transposed convolution's GEMM in bfloat16 (its product
    rounded to bfloat16), the ReLU and the class dot in float32, the output rounded once."""
    head, x, labels = mask_head_case(seed=1)
    with torch.no_grad():
        features = head.convs(x).bfloat16()
        weight, bias = head.deconv.weight.bfloat16(), head.deconv.bias.bfloat16()
        class_w, class_b = head.predictor.weight[labels, :, 0, 0].bfloat16(), head.predictor.bias[labels].bfloat16()
        got = ops.mask_class_logits(features, weight, bias, class_w, class_b)
        product = F.conv_transpose2d(features, weight, stride=2)  # ATen's bfloat16: rounded product
        upsampled = (product.float() + bias.float()[:, None, None]).relu()
        expected = (
            torch.einsum("nchw,nc->nhw", upsampled, class_w.float())[:, None] + class_b.float()[:, None, None, None]
        )
        unrounded = F.conv_transpose2d(features.float(), weight.float(), bias.float(), stride=2).relu()
        in_float32 = (
            torch.einsum("nchw,nc->nhw", unrounded, class_w.float())[:, None] + class_b.float()[:, None, None, None]
        )
    scale = expected.abs().max().item()
    near = (got.float() - expected).abs().max().item()
    assert near <= 2**-7 * scale, near  # the output's own rounding, and the product's last bits
    assert (got.float() - in_float32).abs().max().item() > near  # float32 compute would be closer to this
