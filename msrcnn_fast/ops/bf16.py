"""Inference in bfloat16 where it pays: the predicate, and a Linear layer that follows it.

On an AMD Zen 4 (AVX-512 BF16) oneDNN's bfloat16 matrix products and convolutions accumulate in
float32 at twice float32's rate: the box head's fc6 at inference (1000 RoIs x 12544 -> 1024) takes
60-67 ms there against 128-133 ms in float32, the MaskIoU head's stride-2 convolution (100 RoIs,
256 channels, 14x14) 13 against 25 ms (2-core EPYC, 2026-11-28). Not on an Intel Xeon with
AVX-512 BF16 and no AMX, where fc6 took 156 ms against 83: so bfloat16 is taken on AMD CPUs with
AVX-512 BF16 only (``msrcnn_fast.build_info()["bf16_dot"]``, csrc/common/cpu_capability.h).
Inputs and weights are rounded to bfloat16 (8 significant bits) and the product to bfloat16
before the float32 bias: ~0.5 % relative error per output.

Training (autograd recording), other devices and CPUs, MSRCNN_CPU_CAPABILITY below avx512, and
torch.compile / torch.export tracing compute in float32 unchanged: an exported program does not
depend on the CPU it was exported on.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msrcnn_fast import _C

__all__ = ["InferenceBf16Linear", "bf16_pays"]


def bf16_pays(x: Tensor, weight: Tensor) -> bool:
    """Whether a product of float32 ``x`` with ``weight`` is taken in bfloat16: a CPU float32
    input, no autograd recording, no tracing, and ``build_info()["bf16_dot"]``."""
    recording = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
    eligible = x.device.type == "cpu" and x.dtype == torch.float32 and not recording and not tracing
    return eligible and _C.bf16_dot_in_use()


class InferenceBf16Linear(nn.Linear):
    """nn.Linear (same parameters and state dict) whose forward multiplies in bfloat16 where
    ``bf16_pays``; float32 output."""

    def forward(self, x: Tensor) -> Tensor:
        if not bf16_pays(x, self.weight):
            return super().forward(x)
        # The weight is cast at every call (~2 ms for fc6's 12.8M): a kept copy would go stale
        # under in-place writes that skip the version counter (through .data).
        out = F.linear(x.to(torch.bfloat16), self.weight.to(torch.bfloat16)).float()
        return out if self.bias is None else out.add_(self.bias)
