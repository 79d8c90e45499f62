"""SIGKILL a training process mid-run, resume it: the result equals an uninterrupted run's."""

import os
import signal
import subprocess
import time

import torch

from msrcnn_fast.engine.checkpoint import load_checkpoint
from tests.engine.conftest import run_cli, tiny_config

SOLVER = {"max_iter": 30, "lr_steps": [20], "warmup_iters": 5, "checkpoint_period": 5, "keep_checkpoints": 2}
DATA = {"num_workers": 1}  # a loader worker too: the order and augmentation must not depend on it


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, f"training exited ({process.returncode}) before writing {path}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.005)


def test_sigkill_then_resume_ends_with_the_parameters_of_an_uninterrupted_run(tmp_path, rectangles_root):
    straight = tiny_config(tmp_path / "a.yaml", rectangles_root, tmp_path / "a", solver=SOLVER, data=DATA)
    uninterrupted = run_cli("train", "--config", straight, "--no-progress", stdout=subprocess.DEVNULL)

    killed_dir = tmp_path / "b"
    config = tiny_config(tmp_path / "b.yaml", rectangles_root, killed_dir, solver=SOLVER, data=DATA)
    victim = run_cli("train", "--config", config, "--no-progress", stdout=subprocess.DEVNULL)
    wait_for(killed_dir / "model_0000010.pth", victim)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert not (killed_dir / "model_final.pth").exists(), "the run finished before it was killed"
    stopped_at = load_checkpoint(killed_dir / (killed_dir / "last_checkpoint").read_text().strip())["iteration"]
    assert 5 <= stopped_at < 30  # 5 if killed between writing model_0000010.pth and pointing to it

    resumed = run_cli("train", "--config", config, "--resume", "--no-progress", stdout=subprocess.PIPE, text=True)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and f"resuming from {killed_dir}" in output
    assert uninterrupted.wait(timeout=300) == 0

    a, b = load_checkpoint(tmp_path / "a" / "model_final.pth"), load_checkpoint(killed_dir / "model_final.pth")
    assert a["iteration"] == b["iteration"] == 30
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), f"{name} differs after the resume"
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b, strict=True))
