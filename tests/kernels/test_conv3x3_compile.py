"""The Triton kernels compile for sm_80 and sm_90 without a GPU.

Each launcher runs with its launch intercepted (TRITON_INTERPRET off, autotuning off: the
default config; the forward with and without its ReLU, two variants of the RELU constexpr, as
msrcnn::conv3x3 launches them), and the recorded call is compiled the way ``JITFunction.run`` would compile it
on that GPU (same argument specialisation: unit strides as constants, 16-divisible integers and
pointers annotated), down to a cubin, with Triton's own ptxas. This catches what the
interpreter cannot: code the compiler rejects (e.g. a name bound with two types in the two
branches of an ``if``), and, from ptxas's resource usage, register spills and shared memory
over the architecture's limit.

It relies on two Triton internals (``create_function_from_signature`` and
``JITFunction._pack_args``, triton 3.8, pinned with torch 2.14.1).
"""

import os
import subprocess
import tempfile

import pytest
import torch
import triton
from msrcnn_fast.kernels import conv3x3 as kernels
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
SHARED_MEMORY = {80: 166912, 90: kernels.H100_SHARED_MEMORY}  # bytes per block, opt-in


def recorded_launches(monkeypatch, arch, launch):
    calls = []

    class Recorder:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            return lambda *args, **kwargs: calls.append((self.kernel, grid, args, kwargs))

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv(kernels.AUTOTUNE_ENV, "0")
    monkeypatch.setattr(kernels, "wrap_triton", Recorder)
    monkeypatch.setattr(kernels, "_max_shared_memory", lambda device: SHARED_MEMORY[arch])
    launch()
    return calls


def compile_launch(kernel, args, kwargs, arch):
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)


def resource_usage(compiled) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        report = subprocess.run([CUOBJDUMP, "-res-usage", cubin.name], capture_output=True, text=True, check=True)
    line = next(line for line in report.stdout.splitlines() if "REG:" in line)
    return {key: int(value) for key, value in (item.split(":") for item in line.split() if ":" in item)}


@pytest.mark.skipif(not os.path.exists(CUOBJDUMP), reason="Triton's bundled CUDA tools are missing")
@pytest.mark.parametrize(
    "arch,dtype,c_in,stride",
    [
        (90, torch.float16, 257, 1),  # the MaskIoU head's first conv: main and tail launches
        (90, torch.float16, 256, 2),
        (90, torch.float32, 257, 1),  # TF32 MMA, twice the shared memory
        (80, torch.bfloat16, 257, 1),
        (80, torch.float32, 256, 2),  # the A100 float32 default: the first config that fits 163 KB
    ],
)
def test_kernels_compile_without_spills(monkeypatch, arch, dtype, c_in, stride):
    rois, c_out = 100, 256
    x = torch.randn(rois, c_in, 14, 14).to(dtype)
    weight = torch.randn(c_out, c_in, 3, 3).to(dtype)
    grad = torch.randn(rois, c_out, 14 // stride, 14 // stride).to(dtype)

    def launch():
        for relu in (True, False):  # the heads' convs (+ ReLU) and the backbone's (msrcnn::conv3x3's relu)
            kernels.conv3x3_forward(x, weight, weight[:, 0, 0, 0], stride, relu=relu)
        kernels.conv3x3_backward_input(grad, weight, stride, 14, 14)
        kernels.conv3x3_backward_weight(grad, x, stride)

    calls = recorded_launches(monkeypatch, arch, launch)
    tails = [kwargs.get("TAIL_PART", False) for _, _, _, kwargs in calls]
    assert len(calls) == (6 if c_in % 16 else 4) and tails.count(True) == (2 if c_in % 16 else 0)
    assert [kwargs["RELU"] for _, _, _, kwargs in calls if "RELU" in kwargs] == [True, False]
    for kernel, grid, args, kwargs in calls:
        compiled = compile_launch(kernel, args, kwargs, arch)
        usage = resource_usage(compiled)
        name = f"{kernel.fn.__name__} (tail part: {kwargs.get('TAIL_PART', False)})"
        assert usage["STACK"] == 0 and usage["LOCAL"] == 0, f"{name} spills: {usage}"
        assert compiled.metadata.shared <= SHARED_MEMORY[arch], name
        assert usage["REG"] <= 255
        assert all(n > 0 for n in grid(kwargs)), name
