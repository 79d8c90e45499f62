"""3x3 convolution, stride 1, padding 1 (+ bias, + optional ReLU) by Winograd F(2x2, 3x3) on the CPU.

Op: ``msrcnn::winograd_conv3x3(input, weight, bias?, relu) -> output`` (csrc/ops/winograd_conv3x3).
Each 2x2 output tile costs 16 multiplies per input/output channel pair instead of 36: the tiles'
4x4 input patches are transformed (B^T d B), multiplied with the transformed filters (G g G^T)
as 16 GEMMs over the channels, and transformed back (A^T m A) with the bias and ReLU fused.
On a 2-core AMD EPYC (AVX2) that is 1.7-2x faster than oneDNN's direct convolution on the
mask heads' [100, 256, 14, 14] convs and the ResNet/FPN 3x3 convs
(benchmarks/test_bench_winograd_conv3x3.py).

Where it runs: CPU float32 runs the Winograd kernels; float16 and bfloat16 run them in float32
(inputs converted, the output rounded once); float64 runs ATen's convolution (it is the reference
precision). CUDA tensors run ATen's convolution (cuDNN). The output is channels-last on every
path. Accuracy: float32 Winograd errors are a few times the direct convolution's, ~1e-6 of the
output's scale (see tests/ops/test_winograd_conv3x3.py).

Autograd: the input gradient of a stride-1, padding-1 3x3 convolution is the same convolution
of the output gradient with the flipped, transposed filters, so it runs through this op too
(:func:`conv3x3_input_grad`); the weight gradient is ATen's.

For models: :func:`use_winograd_conv3x3` switches the eligible ``nn.Conv2d`` modules of a model
(3x3, stride 1, padding 1, no dilation or groups) to this op on CPU float32 inputs.
"""

import sys

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

__all__ = ["WinogradConv2d", "conv3x3_input_grad", "conv3x3_weight_grad", "use_winograd_conv3x3", "winograd_conv3x3"]

_OP = "msrcnn::winograd_conv3x3"


def winograd_conv3x3(input: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """relu?(conv2d(input, weight, bias, stride=1, padding=1)) for a 3x3 weight.

    Args:
        input: Tensor[N, Cin, H, W], any layout (channels-last is the fast path; others are
            copied to it), float32 (Winograd), float16/bfloat16 (Winograd in float32) or float64
            (ATen).
        weight: Tensor[Cout, Cin, 3, 3], input's dtype.
        bias: Tensor[Cout] or None.
        relu: apply ReLU to the result.

    Returns:
        Tensor[N, Cout, H, W], channels-last. Differentiable (input, weight and bias). Empty
        maps give an empty output; Cin = 0 gives relu?(bias). A NaN or infinite input value
        only affects the outputs whose 3x3 window holds it (at most the rest of their 2x2
        Winograd output tiles too): NaN there, infinite or (after the ReLU) zero; NaN stays NaN
        through the ReLU, as torch.relu. The other outputs are as for finite inputs.

    Raises:
        ValueError: input not 4-d, weight not [Cout, Cin, 3, 3], bias not [Cout], tensors on
            different devices. TypeError: a non-floating input, weight or bias of another dtype.
    """
    return torch.ops.msrcnn.winograd_conv3x3(input, weight, bias, relu)


def flipped_filters(weight: Tensor) -> Tensor:
    """The filters of the input gradient: [Cin, Cout, 3, 3], each flipped (a transposed view)."""
    return weight.flip((2, 3)).transpose(0, 1)


def conv3x3_input_grad(grad: Tensor, weight: Tensor) -> Tensor:
    """The input gradient of conv2d(input, weight, stride=1, padding=1) for output gradient ``grad``.

    It is conv2d(grad, flipped_filters(weight), stride=1, padding=1), run by this op (channels-last).
    """
    return torch.ops.msrcnn.winograd_conv3x3(grad, flipped_filters(weight), None, False)


# oneDNN's weight gradient on channels-last CPU maps is slower than on NCHW ones from about 32x32 on:
# 3.5x at 200x272, 2.9x at 100x136, 1.6x at 50x68, even at 25x34, conversions included; equal or
# slower at 14x14 (2-core AVX2 EPYC, 256 channels, batch 2).
_NCHW_WEIGHT_GRAD_MIN_PIXELS = 32 * 32


def conv3x3_weight_grad(input: Tensor, grad: Tensor, stride: int = 1) -> Tensor:
    """The weight gradient of conv2d(input, weight, stride, padding=1) for a 3x3 weight and output
    gradient ``grad`` (ATen's); large CPU maps are converted to NCHW first, where it is faster."""
    if input.device.type == "cpu" and input.size(2) * input.size(3) >= _NCHW_WEIGHT_GRAD_MIN_PIXELS:
        input, grad = input.contiguous(), grad.contiguous()
    return torch.nn.grad.conv2d_weight(input, (grad.size(1), input.size(1), 3, 3), grad, stride, 1)


def _check_like_input(input: Tensor, t: Tensor, name: str) -> None:
    torch._check_type(
        t.dtype == input.dtype, lambda: f"{_OP}: expected {name} of the input's dtype {input.dtype}, got {t.dtype}"
    )
    torch._check_value(
        t.device == input.device,
        lambda: f"{_OP}: expected input and {name} on the same device, got {input.device} and {t.device}",
    )


@torch.library.register_fake(_OP)
def _winograd_conv3x3_fake(input, weight, bias, relu):
    # The C++ checks (winograd_conv3x3_host.cpp), with the same error types.
    torch._check_value(
        input.dim() == 4, lambda: f"{_OP}: expected input [N, Cin, H, W], got shape {tuple(input.shape)}"
    )
    torch._check_value(
        weight.dim() == 4 and tuple(weight.shape[1:]) == (input.shape[1], 3, 3),
        lambda: f"{_OP}: expected weight [Cout, {input.shape[1]}, 3, 3], got shape {tuple(weight.shape)}",
    )
    torch._check_type(
        input.dtype.is_floating_point, lambda: f"{_OP}: expected a floating-point input, got {input.dtype}"
    )
    _check_like_input(input, weight, "weight")
    if bias is not None:
        _check_like_input(input, bias, "bias")
    torch._check_value(
        bias is None or tuple(bias.shape) == (weight.shape[0],),
        lambda: f"{_OP}: expected bias [{weight.shape[0]}], got shape {tuple(bias.shape)}",
    )
    n, _, h, w = input.shape
    return torch.empty(
        (n, weight.shape[0], h, w), dtype=input.dtype, device=input.device, memory_format=torch.channels_last
    )


def _setup_context(ctx, inputs, output):
    input, weight, bias, relu = inputs
    ctx.relu = relu
    ctx.has_bias = bias is not None
    saved_input = input if ctx.needs_input_grad[1] else None  # for the weight gradient
    saved_weight = weight if ctx.needs_input_grad[0] else None  # for the input gradient
    ctx.save_for_backward(saved_input, saved_weight, output if relu else None)


def _backward(ctx, grad):
    input, weight, output = ctx.saved_tensors
    if ctx.relu:
        grad = torch.ops.aten.threshold_backward(grad, output, 0)  # zero where output <= 0
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = conv3x3_input_grad(grad, weight)
    if ctx.needs_input_grad[1]:
        grad_weight = conv3x3_weight_grad(input, grad)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


# FlopCounterMode counts the op as ATen's convolution (2 x the direct multiply-adds).
@register_flop_formula(torch.ops.msrcnn.winograd_conv3x3)
def _flops(input_shape, weight_shape, bias_shape, relu, *, out_shape, **kwargs) -> int:
    return conv_flop_count(list(input_shape), list(weight_shape), list(out_shape))


# --- nn.Conv2d modules ------------------------------------------------------------------------


def _eligible_module(conv: nn.Module) -> bool:
    """A 2-d convolution this op computes: 3x3, stride 1, padding 1 (zeros), no dilation or groups."""
    return (
        isinstance(conv, nn.Conv2d)
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.padding) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _runs_winograd(input: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Whether a call with these tensors takes the Winograd kernels (CPU float32, 4-d, no autocast)."""
    return (
        input.device.type == "cpu"
        and input.dim() == 4
        and input.dtype == weight.dtype == torch.float32
        and (bias is None or bias.dtype == torch.float32)
        and not torch.is_autocast_enabled("cpu")
    )


class _WinogradConvMixin:
    """Routes ``nn.Conv2d._conv_forward`` to msrcnn::winograd_conv3x3 where the kernels apply."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if _runs_winograd(input, weight, bias):
            return torch.ops.msrcnn.winograd_conv3x3(input, weight, bias, False)
        return super()._conv_forward(input, weight, bias)


class WinogradConv2d(_WinogradConvMixin, nn.Conv2d):
    """An ``nn.Conv2d(in, out, 3, padding=1)`` (same parameters and state_dict) that runs
    msrcnn::winograd_conv3x3 on CPU float32 inputs and ``nn.Conv2d`` elsewhere."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True, device=None, dtype=None):
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias, device=device, dtype=dtype)


_SWAPPED_CLASSES: dict[type, type] = {nn.Conv2d: WinogradConv2d}


def _winograd_class(cls: type) -> type:
    """``cls`` with _WinogradConvMixin first: WinogradConv2d for nn.Conv2d, else a subclass made
    once per class (registered in this module under its name, so that pickle finds it)."""
    if cls not in _SWAPPED_CLASSES:
        name = f"Winograd{cls.__name__.lstrip('_')}"
        swapped = type(name, (_WinogradConvMixin, cls), {"__module__": __name__, "__qualname__": name})
        setattr(sys.modules[__name__], name, swapped)
        _SWAPPED_CLASSES[cls] = swapped
    return _SWAPPED_CLASSES[cls]


def use_winograd_conv3x3(model: nn.Module) -> list[str]:
    """Switches the eligible convolutions of ``model`` (itself included) to msrcnn::winograd_conv3x3.

    Eligible: ``nn.Conv2d`` modules (or subclasses that compute through ``nn.Conv2d._conv_forward``,
    such as the backbone's conv + folded FrozenBatchNorm) with a 3x3 kernel, stride 1, padding 1
    (zeros), no dilation, no groups. Each keeps its parameters, buffers and state_dict; only its
    class changes (to a subclass whose ``_conv_forward`` runs the op on CPU float32 4-d inputs,
    outside CPU autocast, and the original code elsewhere), as ``fold_frozen_batchnorm`` does.
    Outputs of switched convs are channels-last. Modules that do not compute through
    ``_conv_forward`` (``Conv3x3ReLU`` has its own path) are left alone. Idempotent.

    Returns:
        The names (as in ``model.named_modules()``) of the modules switched by this call.
    """
    switched = []
    for name, module in model.named_modules():
        cls = type(module)
        if isinstance(module, _WinogradConvMixin) or not _eligible_module(module) or not _calls_conv_forward(cls):
            continue
        module.__class__ = _winograd_class(cls)
        switched.append(name)
    return switched


def _calls_conv_forward(cls: type) -> bool:
    """Whether ``cls`` (an nn.Conv2d subclass) keeps nn.Conv2d's ``_conv_forward`` and its forward
    reaches it: nn.Conv2d's own forward, or one whose code calls ``self._conv_forward``."""
    if cls._conv_forward is not nn.Conv2d._conv_forward:
        return False
    forward = cls.forward
    code = getattr(forward, "__code__", None)
    return forward is nn.Conv2d.forward or (code is not None and "_conv_forward" in code.co_names)
