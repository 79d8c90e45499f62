"""Checks that every msrcnn::* op has a kernel registered for a backend.

    python tools/check_kernels.py cuda    # CI: after the FORCE_CUDA=1 build (make check-cuda)

An op has a kernel for a backend when one is registered for that dispatch key: in C++
(``TORCH_LIBRARY_IMPL(msrcnn, CUDA, m)``), or from Python with
``torch.library.register_kernel(op, "cuda")``, as msrcnn_fast/ops/conv3x3.py registers the
Triton launchers as msrcnn::conv3x3's CUDA kernels (``import msrcnn_fast`` runs it; those
kernels are reported apart: they do not depend on the extension's CUDA build). A
``torch.library.triton_op`` counts too: it registers one implementation, under
CompositeExplicitAutograd, for every device, and torch finds its Triton kernels. A plain Python
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
    dispatch key, C++ or Python), 'triton_op' (a triton_op's CompositeExplicitAutograd
    implementation with Triton kernels), or None."""
    key = getattr(torch._C.DispatchKey, backend.upper())
    if torch._C._dispatch_has_kernel_for_dispatch_key(name, key):
        return backend.upper()
    composite = torch._C.DispatchKey.CompositeExplicitAutograd
    if torch._C._dispatch_has_kernel_for_dispatch_key(name, composite) and triton_kernels(name):
        return "triton_op"
    return None


def python_kernel(name: str, backend: str) -> bool:
    """Whether op ``name``'s kernel for ``backend``'s dispatch key is a Python function
    (torch.library registers those as boxed-only kernels; C++ ones also have an unboxed entry)."""
    prefix = f"{backend.upper()}: registered at "
    lines = [line for line in torch._C._dispatch_dump(name).splitlines() if line.startswith(prefix)]
    return bool(lines) and "unboxed" not in lines[0]


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
    print(f"all {len(ops)} msrcnn ops have a {args.backend.upper()} kernel: {', '.join(ops)}")
    python_ops = [name for name in ops if python_kernel(name, args.backend)]
    if python_ops:
        print(f"(registered from Python: {', '.join(python_ops)})")
    triton_ops = [name for name in ops if kernel_for(name, args.backend) == "triton_op"]
    if triton_ops:
        print(f"(Triton, as torch.library.triton_op: {', '.join(triton_ops)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
