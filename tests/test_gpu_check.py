"""make gpu-check's CPU-side parts: the one-line exit without a GPU, and the report writer."""

import json
import os
import shutil
import subprocess

import pytest

from tools.gpu_check_report import write_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine may have a GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "logs"), "REPORT": str(tmp_path / "report.md")}
    done = subprocess.run(["make", "-s", "gpu-check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if not line.startswith("PY=")]
    assert lines == ["gpu-check: no CUDA GPU on this machine; nothing to check."]
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "logs").exists()


def _rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_report_holds_every_figure(tmp_path):
    logs = tmp_path / "logs"
    (logs / "demo50").mkdir(parents=True)
    (logs / "info.txt").write_text(
        "NVIDIA H100 80GB HBM3, 570.1, 81559 MiB\n{'backends': ['cpu', 'cuda'], 'cuda_archs': ['9.0']}\n"
    )
    (logs / "steps.txt").write_text("[0 s] build (sm_90, 16 jobs)\n[95 s] built\n[410 s] done\n")
    (logs / "cuda_tests.log").write_text(
        "tests/ops/test_nms.py::test_cuda PASSED\nFAILED tests/ops/test_roi_align.py::test_cuda_half - AssertionError\n"
        "===== 1 failed, 211 passed, 3 skipped in 140.2s =====\n"
    )
    _rows(
        logs / "rows_cuda.jsonl",
        [
            dict(group="conv3x3 C4", baseline_s=0.002, ours_s=0.001, requirement={"target": 1.5}, missed=False),
            dict(group="nms 5000", baseline_s=0.004, ours_s=0.004, requirement={"target": 2.0}, missed=True),
            dict(
                group="GPU eval latency msrcnn_resnet18_fpn",
                baseline_s=None,
                ours_s=0.061,
                requirement={},
                missed=False,
            ),
        ],
    )
    _rows(
        logs / "rows_cpu_avx2.jsonl",
        [dict(group="roi_align", baseline_s=0.3, ours_s=0.025, requirement={}, missed=False)],
    )
    records = [
        {"iteration": 5, "seconds_per_iter": 0.9, "loss": 5.0, "loss_mask": 0.7},  # the first: warm-up
        {"iteration": 45, "seconds_per_iter": 0.07, "loss": 3.2, "loss_mask": 0.6},
        {"iteration": 50, "seconds_per_iter": 0.05, "loss": 3.0, "loss_mask": 0.5},
    ]
    (logs / "demo50" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (logs / "demo50.log").write_text(
        "generated 100 train images\n"
        "                                                         AP   AP50   AP75    APs    APm    APl\n"
        "Mask R-CNN  segm, ranked by classification score        0.1    0.5    0.0    0.0    0.2    0.1\n"
        "MS R-CNN    segm, ranked by mask score                  0.2    0.6    0.0    0.0    0.3    0.1\n"
    )
    text = open(write_report(str(logs), str(tmp_path / "out" / "gpu-check.md"))).read()
    assert "NVIDIA H100 80GB HBM3" in text and "[95 s] built" in text
    assert "CUDA tests (`-m cuda`): 1 failed, 211 passed, 3 skipped in 140.2s" in text
    assert "FAILED tests/ops/test_roi_align.py::test_cuda_half" in text
    assert "CPU op and kernel tests: did not run" in text
    assert "| conv3x3 C4 | 2.00 ms | 1.00 ms | speedup 2.00x | >= 1.5x: ok |" in text
    assert "| nms 5000 | 4.00 ms | 4.00 ms | speedup 1.00x | >= 2x: **MISSED** |" in text
    assert "| GPU eval latency msrcnn_resnet18_fpn | - | 61.00 ms |  | (no target) |" in text
    assert "3 rows, 1 missed" in text and "| roi_align | 300.00 ms | 25.00 ms | speedup 12.00x |" in text
    assert "## CPU benchmarks, AVX-512 build, 2 cores\n\ndid not run" in text
    assert "iterations: 50; seconds per iteration (median after the first log): 0.060" in text
    assert "losses at the end: loss 3.000, loss_mask 0.500" in text
    assert "MS R-CNN    segm, ranked by mask score" in text


def test_a_check_cut_short_still_gets_a_report(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "demo50.log").write_text("Traceback ...\nRuntimeError: CUDA error: out of memory\n")
    text = open(write_report(str(tmp_path / "logs"), str(tmp_path / "r.md"))).read()
    assert "info.txt missing" in text and "CUDA tests (`-m cuda`): did not run" in text
    assert "no metrics were written" in text and "CUDA error: out of memory" in text
