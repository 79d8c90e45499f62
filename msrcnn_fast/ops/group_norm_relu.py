"""GroupNorm with the ReLU after it, in one op (msrcnn::group_norm_relu).

``group_norm_relu(x, num_groups, weight, bias, eps, relu=True)`` equals
``F.relu(F.group_norm(x, num_groups, weight, bias, eps))`` (``relu=False``: the GroupNorm alone)
and returns a channels-last tensor (what msrcnn::conv3x3 reads and writes). The CPU kernel works
on channels-last maps in two passes per image, its statistics on values shifted by each channel's
first value (ATen's float32 GroupNorm loses digits to cancellation on maps far from zero mean).
:class:`GroupNormReLU` is the module: an ``nn.GroupNorm`` (same parameters and state dict) that
applies the ReLU too.
float64 runs ATen's GroupNorm (the reference precision); float16 and bfloat16 compute in float32.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GroupNormReLU", "group_norm_relu"]

_OP = "msrcnn::group_norm_relu"


def group_norm_relu(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    relu: bool = True,
) -> Tensor:
    """relu?(group_norm(input, num_groups, weight, bias, eps)), channels-last."""
    return torch.ops.msrcnn.group_norm_relu(input, num_groups, weight, bias, eps, relu)[0]


@torch.library.register_fake(_OP)
def _fake(input, num_groups, weight, bias, eps, relu):
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    stats = input.new_empty((input.shape[0], num_groups), dtype=dtype)
    return input.new_empty(input.shape).contiguous(memory_format=torch.channels_last), stats, stats.clone()


@torch.library.register_fake("msrcnn::_group_norm_relu_backward")
def _backward_fake(grad, input, output, mean, rstd, weight, num_groups, relu):
    channels = input.shape[1]
    return (
        input.new_empty(input.shape).contiguous(memory_format=torch.channels_last),
        input.new_empty((channels,)),
        input.new_empty((channels,)),
    )


def _setup_context(ctx, inputs, output):
    input, num_groups, weight, bias, eps, relu = inputs
    y, mean, rstd = output
    ctx.num_groups, ctx.relu = num_groups, relu
    ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
    ctx.save_for_backward(input, y if relu else None, mean, rstd, weight)  # y: the ReLU's mask only


def _backward(ctx, grad, grad_mean, grad_rstd):
    input, y, mean, rstd, weight = ctx.saved_tensors
    grad_input, grad_weight, grad_bias = torch.ops.msrcnn._group_norm_relu_backward(
        grad, input, y if ctx.relu else input, mean, rstd, weight, ctx.num_groups, ctx.relu
    )
    return (
        grad_input,
        None,
        grad_weight if ctx.has_weight else None,
        grad_bias if ctx.has_bias else None,
        None,
        None,
    )


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


class GroupNormReLU(nn.GroupNorm):
    """An nn.GroupNorm followed by a ReLU (``relu=True``), as one op on the CPU."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        relu: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(num_groups, num_channels, eps, affine, device=device, dtype=dtype)
        self.relu = relu

    def forward(self, input: Tensor) -> Tensor:
        if input.device.type != "cpu":
            out = F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)
            return F.relu(out) if self.relu else out
        return group_norm_relu(input, self.num_groups, self.weight, self.bias, self.eps, self.relu)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", relu={self.relu}"
