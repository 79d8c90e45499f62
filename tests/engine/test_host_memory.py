"""keep_freed_memory: a training process serves large blocks from its heap and keeps them
there once freed, instead of mapping them afresh (each first write a page fault) every time."""

import subprocess
import sys

import pytest

# Allocates and frees a 20 MiB tensor; prints glibc's mallinfo2 figures: the bytes of
# mmap()ed blocks that the allocation added, and the free bytes the heap keeps after the free.
_SCRIPT = """
import ctypes, sys, torch
from msrcnn_fast.engine.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
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


def _mallinfo(mode: str) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    mapped, free_kept = result.stdout.split()[-2:]
    return int(mapped), int(free_kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_large_blocks_come_from_the_heap_and_stay_there_once_freed():
    mapped, _ = _mallinfo("default")
    assert mapped >= 20 * _MIB, f"malloc's default should mmap() a fresh 20 MiB block, added {mapped} bytes"
    mapped, free_kept = _mallinfo("keep")
    assert mapped < 20 * _MIB, f"a 20 MiB block should come from the heap, mmap()ed {mapped} bytes"
    assert free_kept >= 20 * _MIB, f"the freed 20 MiB should stay in the heap, {free_kept} bytes free there"
