"""Large CPU outputs of the kernels are advised to the kernel as transparent huge pages
(csrc/common/large_tensors.h): their first writes then fault 2 MiB pages, not 4 KiB ones.

Checked through /proc/self/smaps: with THP in "madvise" mode only advised memory is
THPeligible, so a plain torch.empty of the same size is the control. Other modes (or no THP,
or no /proc) cannot tell the two apart: skipped.
"""

import pytest
import torch

from msrcnn_fast import ops

THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode():
    try:
        with open(THP_MODE) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.index("[") + 1 : text.index("]")] if "[" in text else None


def thp_eligible(address):
    """THPeligible of the mapping of this process that holds `address`."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                start, end = (int(v, 16) for v in head.split("-"))
                inside = start <= address < end
            elif inside and line.startswith("THPeligible:"):
                return int(line.split()[1])
    raise LookupError(f"no mapping holds {address:#x}")


pytestmark = pytest.mark.skipif(thp_mode() != "madvise", reason="needs transparent huge pages in madvise mode")


def middle(t):
    return t.data_ptr() + t.numel() * t.element_size() // 2


def test_plain_allocations_are_not_eligible():
    assert thp_eligible(middle(torch.empty(400, 256, 7, 7))) == 0


def test_roi_align_output_and_converted_gradient_are_advised():
    x = torch.randn(1, 256, 100, 136, requires_grad=True)  # 14 MB
    boxes = [torch.tensor([[10.0, 10.0, 300.0, 200.0]]).repeat(400, 1)]
    out = ops.roi_align(x, boxes, 7, 0.25, 2)  # 400 x 256 x 7 x 7 floats: 20 MB
    assert thp_eligible(middle(out)) == 1
    out.backward(torch.ones_like(out))  # dense RoIs: accumulated channels-last, converted to NCHW
    assert thp_eligible(middle(x.grad)) == 1


def test_conv3x3_output_is_advised_and_small_ones_are_not():
    weight = torch.randn(64, 64, 3, 3)
    large = ops.conv3x3(torch.randn(1, 64, 160, 160), weight)  # 6.5 MB
    small = ops.conv3x3(torch.randn(1, 64, 20, 20), weight)  # 100 KB: left alone
    assert thp_eligible(middle(large)) == 1
    assert thp_eligible(middle(small)) == 0
