"""keep_freed_memory: a training process reuses freed blocks instead of faulting in new pages."""

import subprocess
import sys

import pytest

# A training step's pattern: 24 blocks of 1-8 MiB held together, then freed together. Prints
# the minor page faults of 4 such steps after a first one (which faults its pages in anyway).
_SCRIPT = """
import resource, sys, torch
from msrcnn_fast.engine.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():
    held = [torch.empty((1 + i % 8) << 18).fill_(1.0) for i in range(24)]
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_blocks_are_reused_without_page_faults():
    default, kept = _faults("default"), _faults("keep")
    # 4 x 108 MiB written: about 110000 faults of 4 KiB pages by default (216 or more where the
    # kernel maps 2 MiB pages); none once the blocks are kept
    assert default >= 200, f"malloc's default should fault the freed blocks in again, got {default} faults"
    assert kept < default / 10, f"kept blocks should not fault again: {kept} faults against {default}"
