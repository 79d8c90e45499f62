"""Large CPU outputs of the kernels are advised to the kernel as transparent huge pages
(csrc/common/large_tensors.h): their first writes then fault 2 MiB pages, not 4 KiB ones.

Checked through /proc/self/smaps in a fresh process (a long-lived one's allocator hands out
memory that earlier tensors advised): with THP in "madvise" mode only advised memory is
THPeligible, so a plain torch.empty of the same size is the control. Other modes (or no THP,
or no /proc) cannot tell the two apart: skipped.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"

CHECK = r"""
import torch
from msrcnn_fast import ops

def thp_eligible(t):
    address = t.data_ptr() + t.numel() * t.element_size() // 2
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                start, end = (int(v, 16) for v in head.split("-"))
                inside = start <= address < end
            elif inside and line.startswith("THPeligible:"):
                return int(line.split()[1])
    raise LookupError(hex(address))

plain = torch.empty(400, 256, 7, 7)  # 20 MB, the control
x = torch.randn(1, 256, 100, 136, requires_grad=True)  # 14 MB
boxes = [torch.tensor([[10.0, 10.0, 300.0, 200.0]]).repeat(400, 1)]
pooled = ops.roi_align(x, boxes, 7, 0.25, 2)  # 400 x 256 x 7 x 7 floats: 20 MB
pooled.backward(torch.ones_like(pooled))  # dense RoIs: accumulated channels-last, converted to NCHW
weight = torch.randn(64, 64, 3, 3)
large = ops.conv3x3(torch.randn(1, 64, 160, 160), weight)  # 6.5 MB
small = ops.conv3x3(torch.randn(1, 64, 20, 20), weight)  # 100 KB: left alone
print(*(thp_eligible(t) for t in (plain, pooled, x.grad, large, small)))
"""


def thp_mode():
    try:
        with open(THP_MODE) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.index("[") + 1 : text.index("]")] if "[" in text else None


@pytest.mark.skipif(thp_mode() != "madvise", reason="needs transparent huge pages in madvise mode")
def test_large_outputs_are_advised_and_others_are_not():
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    plain, pooled, grad, large, small = map(int, done.stdout.split())
    assert (plain, small) == (0, 0)  # the controls
    assert (pooled, grad, large) == (1, 1, 1)
