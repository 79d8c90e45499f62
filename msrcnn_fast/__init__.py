"""msrcnn_fast: Mask Scoring R-CNN on hand-written C++/CUDA and Triton kernels.

The ops (``msrcnn_fast.ops``) are registered with PyTorch as ``torch.ops.msrcnn.*``, with
CPU and CUDA kernels, fake kernels for torch.compile/export, and autograd.
"""

import torch  # noqa: F401  (loads libtorch before the extension that links against it)

try:
    from msrcnn_fast import _C
except ImportError as error:  # pragma: no cover - exercised by hand, see README
    raise ImportError(
        "msrcnn_fast's compiled extension (msrcnn_fast._C) is missing or does not load "
        f"({error}). Build it from the repository root with `make build` "
        "(or `pip install --no-build-isolation -e .` inside the project's environment)."
    ) from error

from msrcnn_fast import ops  # noqa: E402  (registers fake kernels and autograd)

__all__ = ["build_info", "empty_cache", "memory_stats", "ops"]


def build_info() -> dict:
    """What the extension was compiled with.

    Returns a dict with ``backends`` (``["cpu"]`` or ``["cpu", "cuda"]``), ``cuda_version``
    (``"13.0"`` or None), ``cuda_archs`` (the GPU code it holds: ``["sm_80", "sm_90",
    "compute_90 (PTX)"]``; PTX is compiled by the driver for newer GPUs), ``cpu_capabilities``
    (the CPU kernel builds: ``["default", "avx2", "avx512"]``), ``cpu_capability`` (the one in
    use), ``max_cpu_capability`` (the best this CPU can run), ``bf16_dot`` (whether the
    heads' FCs multiply in bfloat16 at inference, see ``mask_scoring_rcnn``'s ``bf16_inference``:
    an AMD CPU with AVX-512 BF16, Zen 4 on, and capability avx512), ``amd_avx512`` (whether
    Soft-NMS runs its AVX512 build, which pays on AMD's Zen 4 only: an AMD CPU and capability
    avx512; elsewhere it runs its AVX2 build, as hard NMS and mask_pool_concat do on every
    AVX-512 CPU) and ``torch_version``.
    """
    info = dict(_C.build_info())
    info["cpu_capability"] = _C.cpu_capability()
    info["max_cpu_capability"] = _C.max_cpu_capability()
    info["bf16_dot"] = _C.bf16_dot_in_use()
    info["amd_avx512"] = _C.amd_avx512_in_use()
    return info


def memory_stats() -> dict:
    """The large CPU blocks (4 MiB and more) of msrcnn_fast's outputs and buffers, and the
    transformed conv3x3 filters kept for inference.

    The CPU kernels take such blocks from a cache of those their earlier outputs freed, so
    that repeated calls (every training or inference step) do not fault fresh pages in: 50 MB
    of RoIAlign output costs ~12 ms of page faults and zeroing when fresh, and more in virtual
    machines whose host backs such pages again. At most ``max_cached_bytes`` (512 MiB) of freed
    blocks are kept. Returns a dict: ``cached_bytes`` and ``cached_blocks`` (freed, kept),
    ``in_use_bytes`` (held by live tensors), ``reused`` and ``mapped`` (allocations served from
    the cache and freshly mapped, since the process started), ``max_cached_bytes``.

    Without autograd recording (``torch.no_grad``, ``torch.inference_mode``), ``ops.conv3x3``
    keeps each weight's transformed filters (up to 512 MiB, 21 MB for a 256 -> 256 convolution
    of the RoI heads), found again by the weight's contents: ``conv3x3_filters`` (kept),
    ``conv3x3_filter_bytes`` and ``conv3x3_filter_hits`` (calls that found them).
    """
    return dict(_C.large_block_cache_stats())


def empty_cache() -> None:
    """Drops conv3x3's kept filters and gives the freed large CPU blocks kept for reuse (see
    ``memory_stats``) back to the OS.

    Like ``torch.cuda.empty_cache``: memory that live tensors hold is not touched.
    """
    _C.empty_cache()
