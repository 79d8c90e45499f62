"""tools/ab_training_step.py: the A/B of training-step time at held weights (issue 14)."""

import subprocess
import sys

from tests.engine.conftest import REPO, tiny_config

TOOL = f"{REPO}/tools/ab_training_step.py"


def test_both_runs_hold_the_weights_and_do_the_same_work(rectangles_root, tmp_path):
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, tmp_path / "out")
    state = str(tmp_path / "state.pt")
    run = dict(check=True, capture_output=True, text=True, cwd=tmp_path)
    subprocess.run([sys.executable, TOOL, "--config", config, "--state", state, "--make-state", "3"], **run)
    out = subprocess.run(
        [sys.executable, TOOL, "--config", config, "--state", state, "--steps", "2", "--rounds", "1", REPO, REPO],
        **run,
    ).stdout.splitlines()
    runs = [line for line in out if "ms per step," in line]
    assert len(runs) == 2 and all(line.startswith(f"{REPO}: ") for line in runs)
    assert all("weights moved by 0, " in line for line in runs)
    # the same code at the same weights: the same positives and first losses
    assert runs[0].split(" ms per step, ")[1] == runs[1].split(" ms per step, ")[1]
    assert out[-1].startswith(f"{REPO}: median ") and out[-1].endswith("ms per step over 2 runs")
