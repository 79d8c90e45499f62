"""The package, its build report and the op registry."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import msrcnn_fast
from msrcnn_fast import _C
from tools.check_kernels import missing_kernels, msrcnn_ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_info():
    info = msrcnn_fast.build_info()
    assert info["backends"][0] == "cpu"
    assert set(info["backends"]) <= {"cpu", "cuda"}
    assert info["cpu_capabilities"] == ["default", "avx2"]
    assert info["cpu_capability"] in info["cpu_capabilities"]
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    if "cuda" in info["backends"]:
        assert info["cuda_version"] and all(a.startswith("sm_") for a in info["cuda_archs"])
    else:
        assert info["cuda_version"] is None and info["cuda_archs"] == []


def test_cpu_capability_selection():
    before = _C.cpu_capability()
    try:
        _C.set_cpu_capability("default")
        assert _C.cpu_capability() == "default"
        with pytest.raises(ValueError, match="unknown CPU capability"):
            _C.set_cpu_capability("avx512")
    finally:
        _C.set_cpu_capability(before)


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
