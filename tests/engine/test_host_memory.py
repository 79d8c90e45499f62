"""keep_freed_memory: a training process, and one that loads a trained model for inference
(evaluate, predict), serves large blocks from its heap and keeps them there once freed, instead
of mapping them afresh (each first write a page fault) every time."""

import subprocess
import sys

import pytest
import torch

from msrcnn_fast.engine.build import build_model
from msrcnn_fast.engine.config import load_config
from tests.engine.conftest import tiny_config

# Allocates and frees a 20 MiB tensor; prints glibc's mallinfo2 figures: the bytes of
# mmap()ed blocks that the allocation added, and the free bytes the heap keeps after the free.
_SCRIPT = """
import ctypes, sys, torch
from msrcnn_fast.engine.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
if sys.argv[1] == "load":  # a trained model for inference: config, checkpoint
    from msrcnn_fast.engine.config import load_config
    from msrcnn_fast.engine.inference import load_trained_model
    load_trained_model(load_config(sys.argv[2]), sys.argv[3], device="cpu", categories=[{"id": 1, "name": "box"}])
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
mapped = libc.mallinfo2().hblkhd
block = torch.empty(5 << 20).fill_(1.0)
mapped = libc.mallinfo2().hblkhd - mapped
del block
print(mapped, libc.mallinfo2().fordblks)
"""

_MIB = 1 << 20


def _mallinfo(mode: str, *args: str) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", _SCRIPT, mode, *args], capture_output=True, text=True, check=True)
    mapped, free_kept = result.stdout.split()[-2:]
    return int(mapped), int(free_kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_large_blocks_come_from_the_heap_and_stay_there_once_freed():
    mapped, _ = _mallinfo("default")
    assert mapped >= 20 * _MIB, f"malloc's default should mmap() a fresh 20 MiB block, added {mapped} bytes"
    mapped, free_kept = _mallinfo("keep")
    assert mapped < 20 * _MIB, f"a 20 MiB block should come from the heap, mmap()ed {mapped} bytes"
    assert free_kept >= 20 * _MIB, f"the freed 20 MiB should stay in the heap, {free_kept} bytes free there"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_loading_a_trained_model_for_inference_keeps_freed_memory(tmp_path, rectangles_root):
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, tmp_path / "out")
    checkpoint = tmp_path / "model.pth"
    torch.save(build_model(load_config(config), num_classes=2).state_dict(), checkpoint)
    mapped, free_kept = _mallinfo("load", config, str(checkpoint))
    assert mapped < 20 * _MIB, f"after load_trained_model a 20 MiB block should come from the heap, mmap()ed {mapped}"
    assert free_kept >= 20 * _MIB, f"the freed 20 MiB should stay in the heap, {free_kept} bytes free there"
