"""3x3 convolution + bias + ReLU (padding 1, stride 1 or 2): the MaskIoU and mask heads' convs.

Ops (``torch.library.triton_op``, so torch.compile and torch.export see the Triton kernels):

- ``msrcnn::conv3x3_bias_relu(input, weight, bias?, stride) -> output``
- ``msrcnn::_conv3x3_backward_input(grad, weight, stride, height, width) -> grad_input``
- ``msrcnn::_conv3x3_backward_weight(grad, input, stride) -> (grad_weight, grad_bias)``

(the backward ops take the gradient of the convolution, before the ReLU: the autograd formula
applies the ReLU mask with ATen's ``threshold_backward`` first).

Where each runs: CUDA tensors (float32, float16, bfloat16) run the Triton kernels of
``msrcnn_fast.kernels.conv3x3``. CPU tensors run the same Triton kernels under the Triton
interpreter when ``TRITON_INTERPRET=1`` (read at call time: that is how the tests check the
kernels here). Otherwise CPU float32 at stride 1 runs the Winograd F(2x2, 3x3) kernels of
``msrcnn::winograd_conv3x3`` (forward and input gradient: 1.7-2.5x faster than oneDNN on the
heads' [100, 256, 14, 14] maps on a 2-core AVX2 EPYC; see msrcnn_fast/ops/winograd_conv3x3.py),
and ATen's convolution the rest (stride 2, float64, half types, other devices).
Outputs are channels-last on every path; input gradients channels-last (on the Triton path each
pixel's channels padded to a multiple of 16, e.g. 257 -> 272: strides (H*W*272, 1, W*272, 272));
weight gradients contiguous. Design notes: docs/triton_conv3x3.md.

The backward needs ``output`` (the ReLU mask is ``output > 0``, as for torch.relu) but not the
pre-activation. Double backward is not supported.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.library import triton_op
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

from msrcnn_fast.ops.winograd_conv3x3 import conv3x3_input_grad, conv3x3_weight_grad, winograd_conv3x3

try:
    from msrcnn_fast.kernels.conv3x3 import conv3x3_backward_input, conv3x3_backward_weight, conv3x3_forward
    from msrcnn_fast.kernels.conv3x3 import interpreting as _interpreting

    _TRITON_ERROR = None
except ImportError as error:  # pragma: no cover - Triton is a dependency of torch's CUDA wheels
    _TRITON_ERROR = error

    def _interpreting() -> bool:
        return False

    def _missing_triton(*args, **kwargs):
        raise RuntimeError(f"msrcnn_fast.ops.conv3x3: the Triton kernels cannot be imported ({_TRITON_ERROR})")

    conv3x3_forward = conv3x3_backward_input = conv3x3_backward_weight = _missing_triton

__all__ = ["BACKENDS", "Conv3x3ReLU", "conv3x3_bias_relu", "resolve_backend"]

BACKENDS = ("auto", "triton", "winograd", "aten")
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """'triton', 'winograd' or 'aten': what ``backend`` (one of BACKENDS) means on ``device``.

    'auto' is Triton on CUDA (when Triton imports), Winograd on the CPU, ATen elsewhere.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "auto":
        device_type = torch.device(device).type
        if device_type == "cuda" and _TRITON_ERROR is None:
            return "triton"
        return "winograd" if device_type == "cpu" else "aten"
    return backend


def _runs_triton(input: Tensor) -> bool:
    if input.dtype not in _TRITON_DTYPES:
        return False
    if input.device.type == "cuda":
        return True
    return input.device.type == "cpu" and _interpreting()


def _runs_winograd(input: Tensor, stride: int) -> bool:
    """CPU float32 at stride 1 (outside the Triton interpreter): msrcnn::winograd_conv3x3."""
    return input.device.type == "cpu" and input.dtype == torch.float32 and stride == 1


def _check_args(input: Tensor, weight: Tensor, bias: Tensor | None, stride: int, *, dtypes: bool = True) -> None:
    """Shapes, stride, devices and (with ``dtypes``) one floating dtype, with the argument named.

    Every backend runs these, so that ATen's convolution (which also takes 5x5 weights, integer
    tensors or stride 3) does not quietly compute something else than this op's contract.
    Plain raises: torch.compile traces them (torch._check's message closures it cannot).
    """
    name = "msrcnn::conv3x3_bias_relu"
    if stride not in (1, 2):
        raise ValueError(f"{name}: expected stride 1 or 2, got {stride}")
    if input.dim() != 4:
        raise ValueError(f"{name}: expected input [N, Cin, H, W], got shape {tuple(input.shape)}")
    if weight.dim() != 4 or tuple(weight.shape[1:]) != (input.shape[1], 3, 3):
        raise ValueError(f"{name}: expected weight [Cout, {input.shape[1]}, 3, 3], got shape {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{name}: expected bias [{weight.shape[0]}], got shape {tuple(bias.shape)}")
    for other, other_name in ((weight, "weight"), (bias, "bias")):
        if other is not None and other.device != input.device:
            raise ValueError(
                f"{name}: expected input and {other_name} on one device, got {input.device} and {other.device}"
            )
    if not input.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating-point input, got {input.dtype}")
    if dtypes and weight.dtype != input.dtype:
        raise TypeError(f"{name}: expected weight of the input's dtype {input.dtype}, got {weight.dtype}")
    if dtypes and bias is not None and bias.dtype != input.dtype:
        raise TypeError(f"{name}: expected bias of the input's dtype {input.dtype}, got {bias.dtype}")


@triton_op("msrcnn::conv3x3_bias_relu", mutates_args=())
def _conv3x3_bias_relu(input: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    _check_args(input, weight, bias, stride)
    if _runs_triton(input):
        return conv3x3_forward(input, weight, bias, stride)
    if _runs_winograd(input, stride):
        return torch.ops.msrcnn.winograd_conv3x3(input, weight, bias, True)
    output = F.conv2d(input.contiguous(memory_format=torch.channels_last), weight, bias, stride, 1)
    return torch.relu(output).contiguous(memory_format=torch.channels_last)


@triton_op("msrcnn::_conv3x3_backward_input", mutates_args=())
def _conv3x3_backward_input(grad: Tensor, weight: Tensor, stride: int, height: int, width: int) -> Tensor:
    if _runs_triton(grad):
        return conv3x3_backward_input(grad, weight, stride, height, width)
    if _runs_winograd(grad, stride):
        return conv3x3_input_grad(grad, weight)
    size = (grad.size(0), weight.size(1), height, width)
    grad_input = torch.nn.grad.conv2d_input(size, weight, grad, stride, 1)
    return grad_input.contiguous(memory_format=torch.channels_last)


@triton_op("msrcnn::_conv3x3_backward_weight", mutates_args=())
def _conv3x3_backward_weight(grad: Tensor, input: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    if _runs_triton(input):
        return conv3x3_backward_weight(grad, input, stride)
    grad_weight = conv3x3_weight_grad(input, grad, stride)
    return grad_weight.contiguous(), grad.sum((0, 2, 3))


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride = inputs
    ctx.save_for_backward(input, weight, output)
    ctx.stride = stride
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    input, weight, output = ctx.saved_tensors
    grad = torch.ops.aten.threshold_backward(grad, output, 0)  # ReLU: zero where output <= 0
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.msrcnn._conv3x3_backward_input(grad, weight, ctx.stride, input.size(2), input.size(3))
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        grad_weight, grad_bias = torch.ops.msrcnn._conv3x3_backward_weight(grad, input, ctx.stride)
    return grad_input, grad_weight, grad_bias if ctx.has_bias else None, None


_conv3x3_bias_relu.register_autograd(_backward, setup_context=_setup_context)


# FlopCounterMode counts these ops as ATen's convolution would (2 x multiply-adds; bias and
# ReLU not counted), on every path.
@register_flop_formula(torch.ops.msrcnn.conv3x3_bias_relu)
def _forward_flops(input_shape, weight_shape, bias_shape, stride, *, out_shape, **kwargs) -> int:
    return conv_flop_count(list(input_shape), list(weight_shape), list(out_shape))


@register_flop_formula(torch.ops.msrcnn._conv3x3_backward_input)
def _backward_input_flops(grad_shape, weight_shape, stride, height, width, *, out_shape, **kwargs) -> int:
    return conv_flop_count(list(out_shape), list(weight_shape), list(grad_shape))


@register_flop_formula(torch.ops.msrcnn._conv3x3_backward_weight)
def _backward_weight_flops(grad_shape, input_shape, stride, *, out_shape, **kwargs) -> int:
    return conv_flop_count(list(input_shape), list(out_shape[0]), list(grad_shape))


def conv3x3_bias_relu(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1, *, backend: str = "auto"
) -> Tensor:
    """relu(conv2d(input, weight, bias, stride, padding=1)) for a 3x3 weight.

    Args:
        input: Tensor[N, Cin, H, W] (float32, float16 or bfloat16 on the Triton path; any layout).
        weight: Tensor[Cout, Cin, 3, 3], input's dtype.
        bias: Tensor[Cout] or None.
        stride: 1 or 2.
        backend: 'auto' (Triton on CUDA tensors, Winograd on CPU tensors, ATen elsewhere),
            'triton' (the msrcnn op; on CPU it runs the Triton kernels only under
            TRITON_INTERPRET=1), 'winograd' (msrcnn::winograd_conv3x3 at stride 1, which runs
            its own kernels on CPU float32 and ATen's elsewhere; F.conv2d + relu at stride 2)
            or 'aten' (F.conv2d + relu).

    Returns:
        Tensor[N, Cout, (H - 1) // stride + 1, (W - 1) // stride + 1]; channels-last from the
        Triton and Winograd paths, ATen's layout from ATen. Under autocast the Triton and
        Winograd paths compute in the autocast dtype, as F.conv2d does. Empty maps give an
        empty output; Cin = 0 gives relu(bias). A NaN or infinite input value only affects the
        outputs in its reach, those whose 3x3 window holds it (on the Winograd path at most the
        rest of their 2x2 output tiles too): NaN there, infinite or (after the ReLU) zero; NaN
        stays NaN through the ReLU, as torch.relu. The other outputs are as for finite inputs.

    Raises:
        ValueError: a stride other than 1 or 2, input not 4-d, weight not [Cout, Cin, 3, 3],
            bias not [Cout], tensors on different devices (on every backend: ATen's
            convolution would take a 5x5 weight or stride 3 and compute something else).
        TypeError: a non-floating input, or weight or bias of another dtype (outside autocast).
    """
    resolved = resolve_backend(backend, input.device)
    device_type = input.device.type
    autocast = device_type in ("cuda", "cpu") and torch.is_autocast_enabled(device_type)
    _check_args(input, weight, bias, stride, dtypes=not autocast)  # under autocast, autocast casts them
    if resolved == "aten" or (resolved == "winograd" and stride != 1):
        return torch.relu_(F.conv2d(input, weight, bias, stride, 1))  # in place: conv2d's backward needs no output
    if autocast:
        dtype = torch.get_autocast_dtype(device_type)
        input, weight = input.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if resolved == "winograd":
        return winograd_conv3x3(input, weight, bias, relu=True)
    return torch.ops.msrcnn.conv3x3_bias_relu(input, weight, bias, stride)


class Conv3x3ReLU(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 3, stride, padding=1)`` followed by ReLU, as one op.

    Same parameters (and state_dict) as the Conv2d; ``backend`` as in :func:`conv3x3_bias_relu`
    (an attribute: it can be changed after construction).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        bias: bool = True,
        backend: str = "auto",
        device=None,
        dtype=None,
    ):
        if stride not in (1, 2):
            raise ValueError(f"stride: expected 1 or 2, got {stride}")
        resolve_backend(backend, "cpu")  # validates
        super().__init__(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias, device=device, dtype=dtype)
        self.backend = backend

    def forward(self, input: Tensor) -> Tensor:
        return conv3x3_bias_relu(input, self.weight, self.bias, self.stride[0], backend=self.backend)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"
