"""3x3 convolution, padding 1, stride 1 or 2, bias and optional ReLU fused: ``msrcnn::conv3x3``.

One op, whose kernels the dispatcher picks by device (schemas: csrc/ops/conv3x3/conv3x3.cpp):

- CPU (csrc/ops/conv3x3/cpu): Winograd F(2x2, 3x3) at stride 1 in float32 (float16 and bfloat16
  computed in float32, rounded once), 1.7-2.5x faster than oneDNN on the heads' and the ResNet/FPN
  maps on a 2-core AVX2 EPYC (benchmarks/test_bench_conv3x3.py); ATen's convolution at stride 2
  and in float64 (the reference precision).
- CUDA (registered here): the Triton kernels of ``msrcnn_fast.kernels.conv3x3`` in float32,
  float16 and bfloat16 (design notes: docs/triton_conv3x3.md); ATen's convolution in float64.

Outputs and input gradients are channels-last; weight gradients contiguous. The backward ops
(``_conv3x3_backward_input``, ``_conv3x3_backward_weight``) take the gradient of the convolution:
the autograd formula applies the ReLU mask (``threshold_backward`` on the output) first, so the
backward needs the output, not the pre-activation. Double backward is not supported.

For models: :class:`Conv3x3` is the module (an ``nn.Conv2d`` with the same parameters and
state_dict), and ``Conv3x3.convert(model)`` builds one in place of every eligible ``nn.Conv2d``
of a model. Its ``exact_aten`` attribute is the one opt-out: ATen's ``F.conv2d`` (+ ReLU), with
its autograd, for torchvision's exact numerics.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

from msrcnn_fast.ops.bf16 import bf16_pays

try:
    from msrcnn_fast.kernels import conv3x3 as triton_kernels

    _TRITON_ERROR = None
except ImportError as error:  # pragma: no cover - Triton is a dependency of torch's CUDA wheels
    triton_kernels, _TRITON_ERROR = None, error

__all__ = ["Conv3x3", "conv3x3"]

_OP = "msrcnn::conv3x3"
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_args(input: Tensor, weight: Tensor, bias: Tensor | None, stride: int, *, dtypes: bool = True) -> None:
    """The C++ kernel's checks (csrc/ops/conv3x3/conv3x3_host.cpp), with the same error types:
    for the CUDA kernels and the fake. Plain raises: torch.compile traces them."""
    if stride not in (1, 2):
        raise ValueError(f"{_OP}: expected stride 1 or 2, got {stride}")
    if input.dim() != 4:
        raise ValueError(f"{_OP}: expected input [N, Cin, H, W], got shape {tuple(input.shape)}")
    if weight.dim() != 4 or tuple(weight.shape[1:]) != (input.shape[1], 3, 3):
        raise ValueError(f"{_OP}: expected weight [Cout, {input.shape[1]}, 3, 3], got shape {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{_OP}: expected bias [{weight.shape[0]}], got shape {tuple(bias.shape)}")
    for other, name in ((weight, "weight"), (bias, "bias")):
        if other is not None and other.device != input.device:
            raise ValueError(f"{_OP}: expected input and {name} on one device, got {input.device} and {other.device}")
    if not input.dtype.is_floating_point:
        raise TypeError(f"{_OP}: expected a floating-point input, got {input.dtype}")
    if dtypes and weight.dtype != input.dtype:
        raise TypeError(f"{_OP}: expected weight of the input's dtype {input.dtype}, got {weight.dtype}")
    if dtypes and bias is not None and bias.dtype != input.dtype:
        raise TypeError(f"{_OP}: expected bias of the input's dtype {input.dtype}, got {bias.dtype}")


def _output_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1 if size > 0 else 0


# --- CUDA kernels: Triton (float32, float16, bfloat16), ATen for float64 ---------------------


def _triton():
    if triton_kernels is None:
        raise RuntimeError(f"{_OP}: the Triton kernels cannot be imported ({_TRITON_ERROR})")
    return triton_kernels


def _check_backward_args(grad: Tensor, other: Tensor, name: str, stride: int, op: str) -> None:
    """The C++ CPU backward kernels' checks (csrc/ops/conv3x3/cpu/conv3x3_cpu.cpp)."""
    if stride not in (1, 2):
        raise ValueError(f"{op}: expected stride 1 or 2, got {stride}")
    if grad.dim() != 4 or other.dim() != 4:
        raise ValueError(f"{op}: expected 4-d grad and {name}, got shapes {tuple(grad.shape)}, {tuple(other.shape)}")
    if not grad.dtype.is_floating_point:
        raise TypeError(f"{op}: expected a floating-point grad, got {grad.dtype}")
    if other.dtype != grad.dtype:
        raise TypeError(f"{op}: expected {name} of grad's dtype {grad.dtype}, got {other.dtype}")
    if other.device != grad.device:
        raise ValueError(f"{op}: expected grad and {name} on one device, got {grad.device} and {other.device}")


def _channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _aten_forward(input: Tensor, weight: Tensor, bias: Tensor | None, stride: int, relu: bool) -> Tensor:
    """relu?(conv2d(...)) by ATen, channels-last, with the C++ kernel's empty and Cin = 0 cases."""
    n, c_in, h, w = input.shape
    shape = (n, weight.size(0), _output_size(h, stride), _output_size(w, stride))
    if math.prod(shape) == 0:
        return _channels_last(input.new_empty(shape))
    if c_in == 0:  # ATen's convolution returns no channels here: the convolution is the bias
        output = input.new_zeros(shape) if bias is None else bias.reshape(1, -1, 1, 1).expand(shape)
    else:
        output = F.conv2d(_channels_last(input), weight, bias, stride, 1)
    return _channels_last(torch.relu(output) if relu else output)


def _conv3x3_cuda(input: Tensor, weight: Tensor, bias: Tensor | None, stride: int, relu: bool) -> Tensor:
    _check_args(input, weight, bias, stride)
    if input.dtype in _TRITON_DTYPES:
        return _triton().conv3x3_forward(input, weight, bias, stride, relu=relu)
    return _aten_forward(input, weight, bias, stride, relu)


def _conv3x3_backward_input_cuda(grad: Tensor, weight: Tensor, stride: int, height: int, width: int) -> Tensor:
    _check_backward_args(grad, weight, "weight", stride, "msrcnn::_conv3x3_backward_input")
    size = (grad.size(0), weight.size(1), height, width)
    if math.prod(size) == 0 or grad.numel() == 0:
        return _channels_last(grad.new_zeros(size))
    if grad.dtype in _TRITON_DTYPES:
        # The kernel writes pixel rows padded to a multiple of 16 channels: dense, as the fake says.
        return _channels_last(_triton().conv3x3_backward_input(grad, weight, stride, height, width))
    return _channels_last(torch.nn.grad.conv2d_input(size, weight, grad, stride, 1))


def _conv3x3_backward_weight_cuda(grad: Tensor, input: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    _check_backward_args(grad, input, "input", stride, "msrcnn::_conv3x3_backward_weight")
    size = (grad.size(1), input.size(1), 3, 3)
    if grad.numel() == 0 or input.numel() == 0:
        return grad.new_zeros(size), grad.sum((0, 2, 3))
    if grad.dtype in _TRITON_DTYPES:
        return _triton().conv3x3_backward_weight(grad, input, stride)
    return torch.nn.grad.conv2d_weight(input, size, grad, stride, 1).contiguous(), grad.sum((0, 2, 3))


# The CUDA kernels of the three ops; the same functions run CPU tensors under TRITON_INTERPRET=1
# (how tests check the Triton path without a GPU).
CUDA_KERNELS = {
    _OP: _conv3x3_cuda,
    "msrcnn::_conv3x3_backward_input": _conv3x3_backward_input_cuda,
    "msrcnn::_conv3x3_backward_weight": _conv3x3_backward_weight_cuda,
}
for _name, _kernel in CUDA_KERNELS.items():
    torch.library.register_kernel(_name, "cuda", _kernel)


# --- fake kernels, autograd, FLOPs ------------------------------------------------------------


@torch.library.register_fake(_OP)
def _conv3x3_fake(input, weight, bias, stride, relu):
    _check_args(input, weight, bias, stride)
    n, _, h, w = input.shape
    shape = (n, weight.shape[0], _output_size(h, stride), _output_size(w, stride))
    return input.new_empty(shape).contiguous(memory_format=torch.channels_last)


@torch.library.register_fake("msrcnn::_conv3x3_backward_input")
def _backward_input_fake(grad, weight, stride, height, width):
    _check_backward_args(grad, weight, "weight", stride, "msrcnn::_conv3x3_backward_input")
    shape = (grad.shape[0], weight.shape[1], height, width)
    return grad.new_empty(shape).contiguous(memory_format=torch.channels_last)


@torch.library.register_fake("msrcnn::_conv3x3_backward_weight")
def _backward_weight_fake(grad, input, stride):
    _check_backward_args(grad, input, "input", stride, "msrcnn::_conv3x3_backward_weight")
    return grad.new_empty((grad.shape[1], input.shape[1], 3, 3)), grad.new_empty((grad.shape[1],))


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, relu = inputs
    ctx.stride, ctx.relu, ctx.has_bias = stride, relu, bias is not None
    ctx.input_size = tuple(input.shape[2:])
    saved_input = input if ctx.needs_input_grad[1] or ctx.needs_input_grad[2] else None  # weight gradient
    saved_weight = weight if ctx.needs_input_grad[0] else None  # input gradient
    ctx.save_for_backward(saved_input, saved_weight, output if relu else None)


def _backward(ctx, grad):
    input, weight, output = ctx.saved_tensors
    if ctx.relu:
        grad = torch.ops.aten.threshold_backward(grad, output, 0)  # zero where output <= 0
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.msrcnn._conv3x3_backward_input(grad, weight, ctx.stride, *ctx.input_size)
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        grad_weight, grad_bias = torch.ops.msrcnn._conv3x3_backward_weight(grad, input, ctx.stride)
    return grad_input, grad_weight, grad_bias if ctx.has_bias else None, None, None


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


# FlopCounterMode counts these ops as ATen's convolution would (2 x the direct multiply-adds;
# bias and ReLU not counted), whichever kernel runs.
@register_flop_formula(torch.ops.msrcnn.conv3x3)
def _forward_flops(input_shape, weight_shape, bias_shape, stride, relu, *, out_shape, **kwargs) -> int:
    return conv_flop_count(list(input_shape), list(weight_shape), list(out_shape))


@register_flop_formula(torch.ops.msrcnn._conv3x3_backward_input)
def _backward_input_flops(grad_shape, weight_shape, stride, height, width, *, out_shape, **kwargs) -> int:
    return conv_flop_count(list(out_shape), list(weight_shape), list(grad_shape))


@register_flop_formula(torch.ops.msrcnn._conv3x3_backward_weight)
def _backward_weight_flops(grad_shape, input_shape, stride, *, out_shape, **kwargs) -> int:
    return conv_flop_count(list(input_shape), list(out_shape[0]), list(grad_shape))


# --- the public function and the module -------------------------------------------------------


def conv3x3(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1, *, relu: bool = False
) -> Tensor:
    """relu?(conv2d(input, weight, bias, stride, padding=1)) for a 3x3 weight: msrcnn::conv3x3.

    Args:
        input: Tensor[N, Cin, H, W], floating, any layout (channels-last is the fast path).
        weight: Tensor[Cout, Cin, 3, 3], input's dtype (contiguous is the CPU's fast path).
        bias: Tensor[Cout] or None.
        stride: 1 or 2.
        relu: apply ReLU to the result.

    Returns:
        Tensor[N, Cout, (H - 1) // stride + 1, (W - 1) // stride + 1], channels-last.
        Differentiable (input, weight, bias). Under autocast the kernels compute in the autocast
        dtype, as F.conv2d does. Empty maps give an empty output; Cin = 0 gives relu?(bias). A
        NaN or infinite input value only affects the outputs whose 3x3 window holds it (on the
        Winograd path at most the rest of their 2x2 output tiles too): NaN there, infinite or
        (after the ReLU) zero; NaN stays NaN through the ReLU, as torch.relu.

    Raises:
        ValueError: a stride other than 1 or 2, input not 4-d, weight not [Cout, Cin, 3, 3],
            bias not [Cout], tensors on different devices.
        TypeError: a non-floating input, or weight or bias of another dtype (outside autocast).
    """
    device_type = input.device.type
    # Autocast casts as it does for F.conv2d: float32 (and half) operands, float64 left alone.
    if device_type in ("cuda", "cpu") and torch.is_autocast_enabled(device_type) and input.dtype != torch.float64:
        _check_args(input, weight, bias, stride, dtypes=False)  # autocast casts them
        dtype = torch.get_autocast_dtype(device_type)
        input, weight = input.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    return torch.ops.msrcnn.conv3x3(input, weight, bias, stride, relu)


def _converts(conv: nn.Module) -> bool:
    """An ``nn.Conv2d`` (the class itself) that msrcnn::conv3x3 computes: 3x3, padding 1 (zeros),
    stride 1 or 2, no dilation or groups."""
    return (
        type(conv) is nn.Conv2d
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.padding) == (1, 1)
        and tuple(conv.stride) in ((1, 1), (2, 2))
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 3, stride, padding=1)``, + ReLU with ``relu``,
    computed by msrcnn::conv3x3 (same parameters and state_dict as the Conv2d).

    ``exact_aten`` (an attribute, settable at any time): compute with ATen's ``F.conv2d`` (and
    ``torch.relu_``) and its autograd instead, i.e. exactly as ``nn.Conv2d``: torchvision's
    numerics, e.g. to compare with a torchvision model bit for bit.

    ``bf16_inference`` (an attribute): a stride-2 convolution runs ATen's in bfloat16 where
    ``ops.bf16.bf16_pays`` (inference on an AMD CPU with AVX-512 BF16; 2x faster there); stride 1
    stays on Winograd, which is faster than that.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        bias: bool = True,
        relu: bool = False,
        exact_aten: bool = False,
        bf16_inference: bool = False,
        device=None,
        dtype=None,
    ):
        if stride not in (1, 2):
            raise ValueError(f"stride: expected 1 or 2, got {stride}")
        super().__init__(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias, device=device, dtype=dtype)
        self.relu = relu
        self.exact_aten = exact_aten
        self.bf16_inference = bf16_inference

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.exact_aten:
            output = F.conv2d(input, weight, bias, self.stride, self.padding)
            return torch.relu_(output) if self.relu else output  # in place: conv2d's backward needs no output
        if self.bf16_inference and self.stride[0] == 2 and bf16_pays(input, weight):
            output = F.conv2d(input.to(torch.bfloat16), weight.to(torch.bfloat16), None, self.stride, self.padding)
            output = output.float() if bias is None else output.float().add_(bias[:, None, None])
            return output.relu_() if self.relu else output
        return conv3x3(input, weight, bias, self.stride[0], relu=self.relu)

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        bf16 = ", bf16_inference=True" if self.bf16_inference else ""
        return f"{super().extra_repr()}, relu={self.relu}, exact_aten={self.exact_aten}{bf16}"

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, *, relu: bool = False, exact_aten: bool = False) -> "Conv3x3":
        """A Conv3x3 holding ``conv``'s own parameters (not copies) and training mode."""
        if not _converts(conv):
            raise ValueError(f"conv: expected a 3x3 nn.Conv2d with padding 1, stride 1 or 2, no groups, got {conv}")
        module = cls(
            conv.in_channels,
            conv.out_channels,
            stride=conv.stride[0],
            bias=conv.bias is not None,
            relu=relu,
            exact_aten=exact_aten,
            device="meta",  # no memory for parameters that are replaced at once
        )
        module.weight = conv.weight
        module.bias = conv.bias
        return module.train(conv.training)

    @classmethod
    def convert(cls, module: nn.Module, *, exact_aten: bool = False) -> nn.Module:
        """``module`` with every eligible ``nn.Conv2d`` in it (3x3, padding 1, stride 1 or 2, no
        dilation or groups; subclasses are left alone) replaced by a Conv3x3 on the same
        parameters, and ``exact_aten`` set on every Conv3x3 it holds. Returns ``module`` itself,
        or a new Conv3x3 when ``module`` is an eligible conv (as
        ``nn.SyncBatchNorm.convert_sync_batchnorm``). Idempotent."""
        if _converts(module):
            return Conv3x3.from_conv2d(module, exact_aten=exact_aten)
        for name, child in module.named_children():
            converted = Conv3x3.convert(child, exact_aten=exact_aten)
            if converted is not child:
                setattr(module, name, converted)
        if isinstance(module, Conv3x3):
            module.exact_aten = exact_aten
        return module
