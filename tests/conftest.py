import pytest
import torch
from hypothesis import settings

import msrcnn_fast
from msrcnn_fast import _C

settings.register_profile("msrcnn", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("msrcnn")

CUDA = torch.cuda.is_available() and "cuda" in msrcnn_fast.build_info()["backends"]


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU and the CUDA kernels (FORCE_CUDA=1 build)")
    for item in items:
        if "cuda" in item.keywords and not CUDA:
            item.add_marker(skip)


# The CPU kernel builds, lowest first, and why a CPU without one cannot run it.
CPU_CAPABILITIES = ["default", "avx2", "avx512"]
_LACKS = {
    "avx2": "this CPU lacks AVX2 and FMA: the avx2 kernels are built but cannot run here",
    "avx512": "this CPU lacks AVX-512 (F/BW/VL/DQ): the avx512 kernels are built but cannot run here",
}


def runnable_cpu_capabilities():
    """The CPU kernel builds this CPU can run, lowest first."""
    return CPU_CAPABILITIES[: CPU_CAPABILITIES.index(_C.max_cpu_capability()) + 1]


def skip_unless_runnable(capability):
    """Skips the calling test where this CPU cannot run the `capability` build."""
    if capability not in runnable_cpu_capabilities():
        pytest.skip(_LACKS[capability])


@pytest.fixture(params=CPU_CAPABILITIES)
def cpu_capability(request):
    """Runs a test once per CPU kernel build (default, avx2, avx512); a build this CPU cannot
    run is skipped, with the reason."""
    skip_unless_runnable(request.param)
    before = _C.cpu_capability()
    _C.set_cpu_capability(request.param)
    yield request.param
    _C.set_cpu_capability(before)
