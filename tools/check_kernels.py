"""Checks that every msrcnn::* op has a kernel registered for a backend.

    python tools/check_kernels.py cuda    # CI: after the FORCE_CUDA=1 build (make check-cuda)

An op has a kernel for a backend when one is registered for that dispatch key (the C++ ops:
TORCH_LIBRARY_IMPL(msrcnn, CUDA, m)), or when it is a ``torch.library.triton_op`` whose
implementation torch found Triton kernels in. A triton_op registers one implementation, under
CompositeExplicitAutograd, for every device: on CUDA tensors it launches its Triton kernels, on
CPU tensors ours run them under the Triton interpreter or fall back to ATen. A plain Python
custom op (CompositeExplicitAutograd without Triton kernels) or an op with a CPU kernel only
does not count for CUDA.

Exits non-zero, naming the ops, when a kernel is missing.
"""

import argparse
import sys

import torch

NAMESPACE = "msrcnn::"


def msrcnn_ops(namespace: str = NAMESPACE) -> list[str]:
    return sorted(name for name in torch._C._dispatch_get_all_op_names() if name.startswith(namespace))


def triton_kernels(name: str) -> list:
    """The Triton kernels of the triton_op ``name`` (empty if it is not one)."""
    try:
        from torch._library.triton import get_triton_kernels_for_op
    except ImportError:  # pragma: no cover - torch without triton_op
        return []
    return list(get_triton_kernels_for_op(name))


def kernel_for(name: str, backend: str) -> str | None:
    """What serves op ``name`` on ``backend`` ('cpu' or 'cuda'): 'CPU'/'CUDA' (a kernel for that
    dispatch key), 'triton_op' (a triton_op's CompositeExplicitAutograd implementation with
    Triton kernels), or None."""
    key = getattr(torch._C.DispatchKey, backend.upper())
    if torch._C._dispatch_has_kernel_for_dispatch_key(name, key):
        return backend.upper()
    composite = torch._C.DispatchKey.CompositeExplicitAutograd
    if torch._C._dispatch_has_kernel_for_dispatch_key(name, composite) and triton_kernels(name):
        return "triton_op"
    return None


def missing_kernels(backend: str, namespace: str = NAMESPACE) -> list[str]:
    return [name for name in msrcnn_ops(namespace) if kernel_for(name, backend) is None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["cpu", "cuda"])
    args = parser.parse_args()

    import msrcnn_fast

    info = msrcnn_fast.build_info()
    print(f"msrcnn_fast from {msrcnn_fast.__file__}: {info}")
    if args.backend not in info["backends"]:
        print(f"error: the extension was built without {args.backend} kernels", file=sys.stderr)
        return 1
    ops = msrcnn_ops()
    missing = missing_kernels(args.backend)
    if not ops:
        print("error: no msrcnn ops are registered", file=sys.stderr)
        return 1
    if missing:
        print(f"error: ops without a {args.backend.upper()} kernel: {', '.join(missing)}", file=sys.stderr)
        return 1
    triton_ops = [name for name in ops if kernel_for(name, args.backend) == "triton_op"]
    print(f"all {len(ops)} msrcnn ops have a {args.backend.upper()} kernel: {', '.join(ops)}")
    if triton_ops:
        print(f"(Triton, as torch.library.triton_op: {', '.join(triton_ops)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
