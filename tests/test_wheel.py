"""make wheel's wheel installs and runs in a fresh environment, with no compiler at hand.

The fresh venv reuses this project's torch through a .pth line (no second torch is
downloaded); the wheel is installed with pip --no-index (nothing fetched) while CC and CXX
point at `false` (nothing compiled), and imported from outside the repository, so the
package that runs is the wheel's.
"""

import glob
import json
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = """
import json, torch, msrcnn_fast
from msrcnn_fast import ops
info = msrcnn_fast.build_info()
boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
kept = ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
pooled = ops.roi_align(torch.arange(16.0).reshape(1, 1, 4, 4), [torch.tensor([[0.0, 0, 4, 4]])], 1, 1.0, 2)
print(json.dumps(dict(file=msrcnn_fast.__file__, info=info, kept=kept, pooled=pooled.item(), torch=torch.__file__)))
"""


@pytest.mark.slow
def test_the_wheel_installs_and_runs_in_a_fresh_environment(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "--wheel-dir",
            dist,
            ".",
        ],
        cwd=REPO,
        check=True,
        env={**os.environ, "FORCE_CUDA": "0"},
    )
    (wheel,) = glob.glob(str(dist / "msrcnn_fast-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("msrcnn_fast/_C") and n.endswith(".so") for n in names)
    assert "msrcnn_fast/kernels/__init__.py" in names and "msrcnn_fast/ops/roi_align.py" in names
    assert not any(n.endswith((".cpp", ".cu", ".h")) for n in names)  # binaries, not sources

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env_dir], check=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    with open(os.path.join(site, "project_torch.pth"), "w") as file:  # this project's torch, not a new one
        file.write(sysconfig.get_paths()["purelib"] + "\n")
    no_compiler = {**os.environ, "CC": "false", "CXX": "false", "PIP_NO_INDEX": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel],
        check=True,
        env=no_compiler,
    )
    done = subprocess.run(
        [python, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, env={**no_compiler, "PYTHONPATH": ""}
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(site), result["file"]  # the wheel's package, not the repository's
    assert result["torch"].startswith(sysconfig.get_paths()["purelib"])
    assert result["info"]["backends"][0] == "cpu" and result["info"]["cpu_capabilities"] == [
        "default",
        "avx2",
        "avx512",
    ]
    # samples at (1, 1), (1, 3), (3, 1), (3, 3) of arange(16) as 4x4: 5, 7, 13, 15
    assert result["kept"] == [0, 2] and result["pooled"] == pytest.approx(10.0)
