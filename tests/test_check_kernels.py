"""tools/check_kernels.py: what counts as an op's kernel for a backend.

A scratch namespace holds one op of each kind: a CPU kernel only, CPU and CUDA kernels, a
torch.library.triton_op, and a plain Python custom op.
"""

import sys

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from tools import check_kernels
from tools.check_kernels import kernel_for, missing_kernels, msrcnn_ops, triton_kernels

SCRATCH = "msrcnn_check_test::"
_lib = torch.library.Library(SCRATCH[:-2], "DEF")
_lib.define("cpu_only(Tensor x) -> Tensor")
_lib.impl("cpu_only", lambda x: x.clone(), "CPU")
_lib.define("cpu_and_cuda(Tensor x) -> Tensor")
_lib.impl("cpu_and_cuda", lambda x: x.clone(), "CPU")
_lib.impl("cpu_and_cuda", lambda x: x.clone(), "CUDA")


@triton.jit
def _copy_kernel(src, dst, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst + offsets, tl.load(src + offsets, mask=offsets < n), mask=offsets < n)


@torch.library.triton_op(SCRATCH + "triton_copy", mutates_args=())
def _triton_copy(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    # torch finds the kernels by reading this source: it recognises a bare `wrap_triton(name)`.
    wrap_triton(_copy_kernel)[(triton.cdiv(x.numel(), 128),)](x, out, x.numel(), BLOCK=128)
    return out


@torch.library.custom_op(SCRATCH + "python_only", mutates_args=())
def _python_only(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def test_what_counts_as_a_kernel():
    ops = [SCRATCH + name for name in ("cpu_and_cuda", "cpu_only", "python_only", "triton_copy")]
    assert msrcnn_ops(SCRATCH) == ops
    assert [kernel_for(op, "cuda") for op in ops] == ["CUDA", None, None, "triton_op"]
    assert [kernel_for(op, "cpu") for op in ops] == ["CPU", "CPU", None, "triton_op"]
    assert missing_kernels("cuda", SCRATCH) == [SCRATCH + "cpu_only", SCRATCH + "python_only"]
    assert missing_kernels("cpu", SCRATCH) == [SCRATCH + "python_only"]
    assert triton_kernels(SCRATCH + "triton_copy") == [_copy_kernel]
    assert triton_kernels(SCRATCH + "python_only") == []


def test_msrcnn_triton_ops_count_for_cuda_and_cpu():
    conv_ops = ["msrcnn::_conv3x3_backward_input", "msrcnn::_conv3x3_backward_weight", "msrcnn::conv3x3_bias_relu"]
    assert set(conv_ops) <= set(msrcnn_ops())
    for op in conv_ops:
        assert kernel_for(op, "cuda") == kernel_for(op, "cpu") == "triton_op"
        assert len(triton_kernels(op)) == 2  # the autotuned kernel and the kernel itself
    assert kernel_for("msrcnn::roi_align", "cpu") == "CPU"
    assert not set(conv_ops) & set(missing_kernels("cuda"))


def test_cli_cpu(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["check_kernels.py", "cpu"])
    assert check_kernels.main() == 0
    out = capsys.readouterr().out
    assert "have a CPU kernel" in out and "triton_op: msrcnn::_conv3x3_backward_input" in out
