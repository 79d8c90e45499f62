"""tools/check_kernels.py: what counts as an op's kernel for a backend.

A scratch namespace holds one op of each kind: a CPU kernel only, CPU and CUDA kernels (Python
functions, as msrcnn::conv3x3's CUDA kernels are), a torch.library.triton_op, and a plain Python
custom op. The msrcnn ops: C++ kernels, and msrcnn::conv3x3's Triton launchers registered from
Python for the CUDA dispatch key (msrcnn_fast/ops/conv3x3.py).
"""

import sys

import pytest
import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from tools import check_kernels
from tools.check_kernels import kernel_for, missing_kernels, msrcnn_ops, python_kernel, triton_kernels

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


def test_python_kernels_are_told_apart():
    assert [python_kernel(SCRATCH + name, "cuda") for name in ("cpu_and_cuda", "cpu_only", "triton_copy")] == [
        True,
        False,  # no CUDA kernel at all
        False,  # a triton_op's kernel is CompositeExplicitAutograd's
    ]
    assert python_kernel(SCRATCH + "cpu_only", "cpu")
    assert not python_kernel("msrcnn::roi_align", "cpu")  # C++


CONV_OPS = ["msrcnn::_conv3x3_backward_input", "msrcnn::_conv3x3_backward_weight", "msrcnn::conv3x3"]


def test_msrcnn_conv3x3_has_cpu_and_cuda_kernels():
    """msrcnn::conv3x3 and its backward ops: C++ CPU kernels, Triton CUDA kernels registered from
    Python for the CUDA dispatch key (in every build: they need no CUDA compiler), no triton_op."""
    assert set(CONV_OPS) <= set(msrcnn_ops())
    for op in CONV_OPS:
        assert kernel_for(op, "cpu") == "CPU" and not python_kernel(op, "cpu")
        assert kernel_for(op, "cuda") == "CUDA" and python_kernel(op, "cuda")
        assert triton_kernels(op) == []
    assert kernel_for("msrcnn::roi_align", "cpu") == "CPU"
    assert not set(CONV_OPS) & set(missing_kernels("cuda"))
    assert not missing_kernels("cpu")


def test_cli_cpu(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["check_kernels.py", "cpu"])
    assert check_kernels.main() == 0
    out = capsys.readouterr().out
    assert "all" in out and "have a CPU kernel" in out and "msrcnn::conv3x3" in out
    assert "registered from Python" not in out and "triton_op" not in out


def test_cli_cuda_without_the_cuda_build(monkeypatch, capsys):
    import msrcnn_fast

    if "cuda" in msrcnn_fast.build_info()["backends"]:
        pytest.skip("the extension was built with CUDA kernels")
    monkeypatch.setattr(sys, "argv", ["check_kernels.py", "cuda"])
    assert check_kernels.main() == 1
    assert "built without cuda kernels" in capsys.readouterr().err


@pytest.mark.cuda
def test_cli_cuda(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["check_kernels.py", "cuda"])
    assert check_kernels.main() == 0
    out = capsys.readouterr().out
    assert "have a CUDA kernel" in out and f"(registered from Python: {', '.join(CONV_OPS)})" in out
