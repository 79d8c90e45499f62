"""Large CPU outputs of the kernels (csrc/common/large_tensors.h): advised to the kernel as
transparent huge pages, so that their first writes fault 2 MiB pages, not 4 KiB ones; and once
freed, kept (up to 512 MiB) and handed to the next output of a fitting size.

The advice is checked through /proc/self/smaps in a fresh process (a long-lived one's allocator
hands out memory that earlier tensors advised): with THP in "madvise" mode only advised memory
is THPeligible, so a plain torch.empty of the same size is the control. Other modes (or no THP,
or no /proc) cannot tell the two apart: skipped. The reuse is checked through
msrcnn_fast.memory_stats() and the outputs' addresses, and outputs written into reused blocks
(which are not zeroed) against fresh ones.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
import torchvision

import msrcnn_fast
from msrcnn_fast import ops

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


# --- reuse of freed blocks ----------------------------------------------------------------


def _roi_inputs(channels_last):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 100, 136, generator=g)  # 3.5 MB
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xy = torch.rand(1000, 2, generator=g) * torch.tensor([544.0, 400.0])
    wh = 4 + torch.rand(1000, 2, generator=g) * 200
    return x, [torch.cat([xy, xy + wh], dim=1)]  # output: 1000 x 64 x 7 x 7 floats, 12.5 MB


def test_a_freed_output_block_is_reused_by_the_next_call():
    x, boxes = _roi_inputs(channels_last=False)
    first = ops.roi_align(x, boxes, 7, 0.25, 2)
    address = first.data_ptr()
    before = msrcnn_fast.memory_stats()
    del first
    second = ops.roi_align(x, boxes, 7, 0.25, 2)
    after = msrcnn_fast.memory_stats()
    assert second.data_ptr() == address
    assert after["reused"] == before["reused"] + 1
    assert after["mapped"] == before["mapped"]


@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_in_reused_blocks_are_whole(channels_last):
    # Blocks freed full of NaN, then taken by the same calls again: every element must be
    # written (a kernel that relied on fresh, zeroed pages would leave NaN behind).
    x, boxes = _roi_inputs(channels_last)
    expected = ops.roi_align(x, boxes, 7, 0.25, 2).clone()  # torch's own memory
    torch.testing.assert_close(expected, torchvision.ops.roi_align(x, boxes, 7, 0.25, 2), rtol=1e-4, atol=1e-4)
    poisoned = [ops.roi_align(x, boxes, 7, 0.25, 2) for _ in range(3)]
    for t in poisoned:
        t.fill_(float("nan"))
    del poisoned, t
    assert torch.equal(ops.roi_align(x, boxes, 7, 0.25, 2), expected)
    # conv3x3 with 40 output channels: the packed filters' last panel is zero-padded.
    g = torch.Generator().manual_seed(1)
    inp = torch.randn(2, 48, 96, 96, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(40, 48, 3, 3, generator=g) / 20
    reference = ops.conv3x3(inp, weight).clone()
    torch.testing.assert_close(reference, torch.nn.functional.conv2d(inp, weight, padding=1), rtol=1e-4, atol=1e-4)
    outputs = [ops.conv3x3(inp, weight) for _ in range(3)]
    for t in outputs:
        t.fill_(float("nan"))
    del outputs, t
    assert torch.equal(ops.conv3x3(inp, weight), reference)


def _poison_then_repeat(make):
    """make() after three of its outputs (and their gradients) were freed full of NaN."""
    expected = [t.clone() for t in make()]
    freed = [make() for _ in range(3)]
    for outputs in freed:
        for t in outputs:
            t.fill_(float("nan") if t.is_floating_point() else 1)
    del freed, outputs, t
    for got, want in zip(make(), expected):
        assert torch.equal(got, want)


def test_group_norm_relu_and_mask_pool_concat_in_reused_blocks_are_whole():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 256, 14, 14, generator=g).contiguous(memory_format=torch.channels_last)  # 12.8 MB
    features = torch.randn(64, 256, 14, 14, generator=g)
    logits = torch.randn(64, 3, 28, 28, generator=g)
    labels = torch.randint(0, 3, (64,), generator=g)
    grad = torch.randn(64, 256, 14, 14, generator=g)

    def group_norm():
        leaf = x.detach().requires_grad_()
        y = ops.group_norm_relu(leaf, 32)
        y.backward(grad)
        return y.detach(), leaf.grad

    def pool_concat(mode):
        def run():
            leaf = features.detach().requires_grad_()
            out = ops.mask_pool_concat(leaf, logits, labels, mode)
            out.backward(torch.ones_like(out))
            return out.detach(), leaf.grad

        return run

    _poison_then_repeat(group_norm)
    _poison_then_repeat(pool_concat("concat"))
    _poison_then_repeat(pool_concat("multiply"))


@pytest.mark.parametrize("channels_last", [False, True])
def test_roi_align_map_gradients_in_reused_blocks_are_whole(channels_last):
    # The backward accumulates into map-sized buffers taken from the cache (3.5 MB maps: 4
    # levels' worth in one here, 4 x 64 x 100 x 136 floats); blocks freed full of NaN must be
    # zeroed before the RoIs' gradients are added.
    x, boxes = _roi_inputs(channels_last)
    x = torch.cat([x] * 4)
    boxes = [torch.cat([b, b], dim=0)[:600] for b in boxes * 4]
    grad = torch.randn(2400, 64, 7, 7, generator=torch.Generator().manual_seed(4))

    def run():
        leaf = x.clone().requires_grad_()
        ops.roi_align(leaf, boxes, 7, 0.25, 2).backward(grad)
        return [leaf.grad]

    leaf = x.clone().requires_grad_()
    torchvision.ops.roi_align(leaf, boxes, 7, 0.25, 2).backward(grad)
    torch.testing.assert_close(run()[0], leaf.grad, rtol=1e-4, atol=1e-4)
    _poison_then_repeat(run)


def test_pasted_masks_in_reused_blocks_are_whole():
    g = torch.Generator().manual_seed(3)
    masks = torch.rand(20, 1, 28, 28, generator=g)
    xy = torch.rand(20, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + 20 + torch.rand(20, 2, generator=g) * 200], dim=1)
    # 20 x 480 x 640 bools: 6 MB; blocks freed full of ones (True) must come back all written
    _poison_then_repeat(lambda: [ops.paste_masks(masks, boxes, (480, 640))])


def test_the_cache_is_bounded_and_empty_cache_gives_it_back():
    x, boxes = _roi_inputs(channels_last=False)
    boxes = [boxes[0].repeat(4, 1)]  # 4000 RoIs: 50 MB outputs
    outputs = [ops.roi_align(x, boxes, 7, 0.25, 2) for _ in range(14)]  # 700 MB live
    held = msrcnn_fast.memory_stats()
    assert held["in_use_bytes"] >= 14 * outputs[0].nbytes
    del outputs
    stats = msrcnn_fast.memory_stats()
    assert 0 < stats["cached_bytes"] <= stats["max_cached_bytes"] == 512 << 20
    assert stats["in_use_bytes"] <= held["in_use_bytes"] - 14 * 50 << 20
    msrcnn_fast.empty_cache()
    assert msrcnn_fast.memory_stats()["cached_bytes"] == 0 == msrcnn_fast.memory_stats()["cached_blocks"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_child_forked_while_another_thread_held_the_caches_can_use_them():
    # fork() copies only the forking thread: had the caches' locks been copied while another
    # thread held them (here for a second), the child's first large output or kept filter
    # would wait forever (csrc/common/fork_safe.h takes them across fork()).
    x, boxes = _roi_inputs(channels_last=False)
    g = torch.Generator().manual_seed(3)
    inp = torch.randn(1, 16, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(16, 16, 3, 3, generator=g)
    ops.conv3x3(inp, weight)  # both caches exist before the fork
    holder = threading.Thread(target=msrcnn_fast._C._hold_cache_locks_for_testing, args=(1.0,))
    holder.start()
    time.sleep(0.3)  # the locks are held now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if both caches answer
        try:
            torch.set_num_threads(1)
            ok = ops.roi_align(x, boxes, 7, 0.25, 2).numel() * 4 >= 4 << 20
            ops.conv3x3(inp, weight)
            ops.conv3x3(inp, weight)  # seen twice: kept, then looked up
            os._exit(0 if ok and msrcnn_fast.memory_stats()["conv3x3_filters"] >= 1 else 1)
        except BaseException:
            os._exit(1)
    holder.join()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung on a cache lock copied while held")
