"""Checks that every msrcnn::* op has a kernel registered for a backend.

    python tools/check_kernels.py cuda    # CI: after the FORCE_CUDA=1 build (make check-cuda)

Exits non-zero, naming the ops, when a kernel is missing.
"""

import argparse
import sys

import torch

NAMESPACE = "msrcnn::"


def msrcnn_ops() -> list[str]:
    return sorted(name for name in torch._C._dispatch_get_all_op_names() if name.startswith(NAMESPACE))


def missing_kernels(backend: str) -> list[str]:
    key = getattr(torch._C.DispatchKey, backend.upper())
    return [name for name in msrcnn_ops() if not torch._C._dispatch_has_kernel_for_dispatch_key(name, key)]


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
