"""Two gloo DDP processes with one image each take the step one process takes with both.

DDP averages the per-process gradients; that equals the single-process gradient when each
image contributes the same number of terms to every loss mean. The model options below make
that so (every anchor sampled, no anchor between the RPN thresholds, the ground-truth boxes as
the only proposals; every image has two instances and the same size), which leaves float
summation order as the only difference.
"""

import os
import subprocess
import sys

import torch

from msrcnn_fast.engine.build import build_model
from msrcnn_fast.engine.checkpoint import load_checkpoint
from msrcnn_fast.engine.config import load_config
from msrcnn_fast.engine.rng import seed_everything
from tests.engine.conftest import REPO, run_cli, tiny_config

EQUAL_TERMS_PER_IMAGE = {
    "rpn_post_nms_top_n_train": 0,
    "rpn_batch_size_per_image": 100_000,
    "rpn_fg_iou_thresh": 0.5,
    "rpn_bg_iou_thresh": 0.5,
    "box_batch_size_per_image": 100_000,
}
# The single process inherits this process's choice of CPU kernels (make test-aten-numerics sets
# ATEN_CPU_CAPABILITY=default); the DDP processes, started with a clean environment, must make the
# same one: ATen's default kernels against its AVX-512 ones differed by 2.9e-4 in conv1's weight.
SAME_KERNELS = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "MSRCNN_CPU_CAPABILITY") if k in os.environ}
ONE_BIG_STEP = {"images_per_batch": 2, "max_iter": 1, "lr_steps": [], "warmup_iters": 0, "base_lr": 0.1}


def test_two_process_ddp_step_equals_the_single_process_step(tmp_path, rectangles_root):
    configs = {
        name: tiny_config(
            tmp_path / f"{name}.yaml",
            rectangles_root,
            tmp_path / name,
            model=EQUAL_TERMS_PER_IMAGE,
            solver=ONE_BIG_STEP,
        )
        for name in ("single", "ddp")
    }
    single = run_cli("train", "--config", configs["single"], "--no-progress", stdout=subprocess.DEVNULL)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.run(
        [*torchrun, "-m", "msrcnn_fast.train", "--config", configs["ddp"], "--no-progress"],
        cwd=REPO,
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, "PATH": "/usr/bin:/bin", **SAME_KERNELS},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert single.wait(timeout=300) == 0

    one = load_checkpoint(tmp_path / "single" / "model_final.pth")
    two = load_checkpoint(tmp_path / "ddp" / "model_final.pth")
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert not torch.equal(two["rng"][0]["torch"], two["rng"][1]["torch"])  # each rank's own RNG is kept

    cfg = load_config(configs["single"])
    seed_everything(cfg.solver.seed)
    initial = build_model(cfg, num_classes=3).state_dict()
    largest_step = max((one["model"][n] - initial[n]).abs().max().item() for n in initial)
    assert largest_step > 1e-2  # the step is large next to the tolerance below
    # The two runs sum the gradients in different orders (per process, then all-reduced), and the
    # 3x3 convs' Winograd F(4x4, 3x3) rounds at ~1e-4 of their outputs' scale: 7.8e-6 measured.
    for name, value in one["model"].items():
        torch.testing.assert_close(two["model"][name], value, rtol=0, atol=2e-5, msg=name)
