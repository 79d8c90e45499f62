"""3x3 convolution (stride 1, padding 1) + bias + optional ReLU by Winograd F(2x2, 3x3) on the CPU."""

import torch
from torch import Tensor

__all__ = ["winograd_conv3x3"]


def winograd_conv3x3(input: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    return torch.ops.msrcnn.winograd_conv3x3(input, weight, bias, relu)


@torch.library.register_fake("msrcnn::winograd_conv3x3")
def _winograd_conv3x3_fake(input, weight, bias, relu):
    n, _, h, w = input.shape
    return input.new_empty((n, weight.shape[0], h, w)).contiguous(memory_format=torch.channels_last)
