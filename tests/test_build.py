"""The package, its build report and the op registry."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import msrcnn_fast
from msrcnn_fast import _C
from tests.conftest import runnable_cpu_capabilities
from tools.check_kernels import missing_kernels, msrcnn_ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_info():
    info = msrcnn_fast.build_info()
    assert info["backends"][0] == "cpu"
    assert set(info["backends"]) <= {"cpu", "cuda"}
    assert info["cpu_capabilities"] == ["default", "avx2", "avx512"]
    assert info["cpu_capability"] in info["cpu_capabilities"]
    assert info["max_cpu_capability"] in info["cpu_capabilities"]
    assert info["max_cpu_capability"] == _C.max_cpu_capability()
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    if "cuda" in info["backends"]:
        assert info["cuda_version"] and all(a.startswith("sm_") for a in info["cuda_archs"])
    else:
        assert info["cuda_version"] is None and info["cuda_archs"] == []


def test_cpu_capability_selection():
    before = _C.cpu_capability()
    try:
        for name in runnable_cpu_capabilities():
            _C.set_cpu_capability(name.upper())  # names are case-insensitive
            assert _C.cpu_capability() == name
        _C.set_cpu_capability("default")
        assert _C.cpu_capability() == "default"
    finally:
        _C.set_cpu_capability(before)


def test_unknown_cpu_capability_lists_the_builds():
    before = _C.cpu_capability()
    with pytest.raises(ValueError, match="unknown CPU capability 'avx1024'; expected 'default', 'avx2' or 'avx512'"):
        _C.set_cpu_capability("avx1024")
    assert _C.cpu_capability() == before


@pytest.mark.parametrize("name", ["avx2", "avx512"])
def test_cpu_capability_above_the_cpu_is_refused(name):
    best = _C.max_cpu_capability()
    if name in runnable_cpu_capabilities():
        pytest.skip(f"this CPU runs {name}: nothing above it to refuse")
    before = _C.cpu_capability()
    with pytest.raises(ValueError, match=f"this CPU does not support {name} \\(best: {best}\\)"):
        _C.set_cpu_capability(name)
    assert _C.cpu_capability() == before


def _capability_in_child(value):
    """The capability a fresh process starts with under MSRCNN_CPU_CAPABILITY=`value`."""
    result = subprocess.run(
        [sys.executable, "-c", "from msrcnn_fast import _C; print(_C.cpu_capability())"],
        capture_output=True,
        text=True,
        env={**os.environ, "MSRCNN_CPU_CAPABILITY": value},
        check=True,
    )
    return result.stdout.strip()


def test_environment_variable_chooses_the_build():
    """MSRCNN_CPU_CAPABILITY lowers the build; a build above the CPU's (avx512 on this Zen 3,
    say) gives the best one it has, as if unset."""
    best = _C.max_cpu_capability()
    assert _capability_in_child("") == best
    assert _capability_in_child("default") == "default"
    assert _capability_in_child("AVX2") == ("avx2" if "avx2" in runnable_cpu_capabilities() else best)
    assert _capability_in_child("avx512") == best


def test_every_op_has_a_cpu_kernel():
    ops = msrcnn_ops()
    assert "msrcnn::roi_align" in ops and "msrcnn::_multi_level_roi_align_backward" in ops
    assert missing_kernels("cpu") == []


def test_import_without_extension_says_how_to_build(tmp_path):
    """A copy of the package without the compiled extension fails with a build hint."""
    shutil.copytree(
        os.path.join(ROOT, "msrcnn_fast"), tmp_path / "msrcnn_fast", ignore=shutil.ignore_patterns("_C*.so")
    )
    script = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; import msrcnn_fast"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "make build" in result.stderr


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_extension_uses_the_process_libstdcxx():
    """The extension links libstdc++ dynamically, sharing the process's copy. A toolchain that
    links its own statically (one seen on a lent GPU machine) leaves that copy's streams
    uninitialised: the first error message that formats a number crashes the process."""
    needed = subprocess.run(["readelf", "-d", _C.__file__], capture_output=True, text=True, check=True).stdout
    assert "[libstdc++.so" in needed, f"{_C.__file__} links no libstdc++.so: rebuild it with the system g++"
