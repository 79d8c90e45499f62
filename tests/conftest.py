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


def _capabilities():
    names = ["default", "avx2"]
    return names[: names.index(_C.max_cpu_capability()) + 1]


@pytest.fixture(params=_capabilities())
def cpu_capability(request):
    """Runs a test once per CPU kernel build this CPU can run (default, avx2)."""
    before = _C.cpu_capability()
    _C.set_cpu_capability(request.param)
    yield request.param
    _C.set_cpu_capability(before)
