"""A repeated training command never destroys the run in its output_dir: it refuses (exit 2,
nothing written) unless told to --resume it or to --overwrite it; torchrun's ranks agree."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from msrcnn_fast.engine.checkpoint import load_checkpoint
from msrcnn_fast.evaluate import main as evaluate_main
from msrcnn_fast.train import main as train_main
from tests.engine.conftest import REPO, tiny_config

SOLVER = {"max_iter": 2, "lr_steps": [], "checkpoint_period": 1, "keep_checkpoints": 0}


def train(config, *args):
    return train_main(["--config", config, "--no-progress", *args])


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                files[os.path.relpath(path, folder)] = file.read()
    return files


def metrics_iterations(folder):
    with open(folder / "metrics.jsonl") as file:
        return [json.loads(line)["iteration"] for line in file]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, rectangles_root):
    """(config, output_dir, snapshot) of a finished two-iteration run with periodic checkpoints."""
    folder = tmp_path_factory.mktemp("finished")
    out = folder / "out"
    config = tiny_config(folder / "c.yaml", rectangles_root, out, solver=SOLVER)
    assert train(config) == 0
    files = snapshot(out)
    assert sorted(files) == [
        "config.yaml", "last_checkpoint", "metrics.jsonl", "model_0000001.pth", "model_final.pth"
    ]  # fmt: skip
    return config, out, files


def assert_refused(error, out):
    assert f"output_dir {out} holds a run" in error
    assert "nothing was written" in error
    for way_out in ("--resume", "another output_dir (output_dir=PATH)", "--overwrite"):
        assert way_out in error, (way_out, error)


@pytest.mark.parametrize("overrides", [[], ["solver.max_iter=3", "solver.base_lr=0.01"]])
def test_a_repeated_command_refuses_a_finished_run_and_writes_nothing(finished, capsys, overrides):
    config, out, files = finished
    capsys.readouterr()
    assert train(config, *overrides) == 2
    captured = capsys.readouterr()
    assert_refused(captured.err, out)
    assert "model_final.pth" in captured.err and "training done" not in captured.out
    assert snapshot(out) == files  # byte for byte: checkpoints, metrics.jsonl, config.yaml


@pytest.mark.parametrize("name", ["model_final.pth", "model_0000250.pth", "last_checkpoint", "metrics.jsonl"])
def test_any_file_of_a_run_counts_as_a_run(tmp_path, rectangles_root, capsys, name):
    # an unfinished run (stopped, killed, diverged) is a run too: --resume may continue it
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"from an earlier run")
    (out / "config.yaml").write_bytes(b"the earlier run's config")
    assert train(tiny_config(tmp_path / "c.yaml", rectangles_root, out, solver=SOLVER)) == 2
    assert_refused(capsys.readouterr().err, out)
    assert snapshot(out) == {name: b"from an earlier run", "config.yaml": b"the earlier run's config"}


def test_a_folder_without_a_run_is_used(tmp_path, rectangles_root):
    # config.yaml alone (a run that failed while it was being built), other files, a subfolder
    out = tmp_path / "out"
    (out / "eval").mkdir(parents=True)
    (out / "config.yaml").write_text("an earlier attempt")
    (out / "notes.txt").write_text("mine")
    assert train(tiny_config(tmp_path / "c.yaml", rectangles_root, out, solver={**SOLVER, "max_iter": 1})) == 0
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 1
    assert (out / "notes.txt").read_text() == "mine"


def test_output_dir_that_is_a_file_is_an_error(tmp_path, rectangles_root, capsys):
    (tmp_path / "out").write_text("a file")
    assert train(tiny_config(tmp_path / "c.yaml", rectangles_root, tmp_path / "out", solver=SOLVER)) == 2
    assert f"output_dir {tmp_path / 'out'} exists and is not a folder" in capsys.readouterr().err


def test_overwrite_starts_over_and_leaves_nothing_of_the_old_run(tmp_path, rectangles_root, capsys):
    out = tmp_path / "out"
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, out, solver={**SOLVER, "max_iter": 3})
    assert train(config) == 0
    (out / ".model_0000004.pth.tmp-12345").write_bytes(b"half a checkpoint of a killed write")
    (out / "eval").mkdir()
    (out / "eval" / "evaluation.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    assert sorted(os.listdir(out))[:4] == [".model_0000004.pth.tmp-12345", "config.yaml", "eval", "last_checkpoint"]

    assert train(config, "--overwrite", "solver.max_iter=1", "solver.checkpoint_period=0") == 0
    printed = capsys.readouterr().out
    assert "starting over: removed the previous run's last_checkpoint, " in printed
    assert ".model_0000004.pth.tmp-12345, config.yaml, metrics.jsonl, model_0000001.pth, model_0000002.pth" in printed
    assert sorted(os.listdir(out)) == [
        "config.yaml", "eval", "last_checkpoint", "metrics.jsonl", "model_final.pth", "notes.txt"
    ]  # fmt: skip  # no model_000000N.pth, no temporary file of the old run; other files stay
    assert metrics_iterations(out) == [1]
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 1
    assert "max_iter: 1" in (out / "config.yaml").read_text()
    assert (out / "notes.txt").read_text() == "mine" and (out / "eval" / "evaluation.json").exists()


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(finished, capsys):
    # the old run is removed only once the new one is built: a bad data path loses nothing
    config, out, files = finished
    assert train(config, "--overwrite", "data.train.annotations=none.json") == 2
    assert "none.json: annotation file does not exist" in capsys.readouterr().err
    assert snapshot(out) == files


def test_resume_is_unaffected(finished, tmp_path, capsys):
    config, _, files = finished
    copy = tmp_path / "copy"  # of the finished run
    copy.mkdir()
    for name, data in files.items():
        (copy / name).write_bytes(data)
    capsys.readouterr()
    # resumed with its own schedule: nothing to do, nothing of it changes
    assert train(config, "--resume", f"output_dir={copy}") == 0
    assert f"resuming from {copy / 'model_final.pth'} (iteration 2 of 2)" in capsys.readouterr().out
    unchanged = lambda files: {k: v for k, v in files.items() if k != "config.yaml"}  # noqa: E731 (it names output_dir)
    assert unchanged(snapshot(copy)) == unchanged(files)
    # resumed with a longer schedule: continues
    assert train(config, "--resume", f"output_dir={copy}", "solver.max_iter=3") == 0
    assert f"resuming from {copy / 'model_final.pth'} (iteration 2 of 3)" in capsys.readouterr().out
    assert metrics_iterations(copy) == [1, 2, 3]
    assert load_checkpoint(copy / "model_final.pth")["iteration"] == 3


def test_resuming_from_a_corrupt_checkpoint_is_a_clear_error(finished, tmp_path, capsys):
    config, _, files = finished
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in files.items():
        (copy / name).write_bytes(data[: len(data) // 2] if name == "model_final.pth" else data)
    assert train(config, "--resume", f"output_dir={copy}", "solver.max_iter=3") == 2
    err = capsys.readouterr().err
    assert f"{copy / 'model_final.pth'}: not a loadable checkpoint" in err and "Traceback" not in err


def test_a_checkpoint_of_another_model_is_a_clear_error(finished, tmp_path, capsys):
    config, out, files = finished
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in files.items():
        (copy / name).write_bytes(data)
    other_model = "model.box_fc_dim=16"
    assert train(config, "--resume", f"output_dir={copy}", "solver.max_iter=3", other_model) == 2
    err = capsys.readouterr().err
    assert f"{copy / 'model_final.pth'}: does not fit the model of this config (other shapes [" in err, err
    assert "--overwrite" in err and "Traceback" not in err
    checkpoint = str(out / "model_final.pth")
    argv = ["--config", config, "--checkpoint", checkpoint, "--out", str(tmp_path / "e"), other_model]
    assert evaluate_main(argv) == 2
    assert f"{checkpoint}: does not fit the model of this config" in capsys.readouterr().err


def test_resume_and_overwrite_exclude_each_other(finished, capsys):
    config, out, files = finished
    with pytest.raises(SystemExit) as exit_:
        train(config, "--resume", "--overwrite")
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert snapshot(out) == files


def test_every_ddp_rank_refuses_and_none_hangs(tmp_path, rectangles_root):
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"weight": torch.ones(1)}, out / "model_final.pth")
    (out / "last_checkpoint").write_text("model_final.pth\n")
    files = snapshot(out)
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, out, solver=SOLVER)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.run(
        [*torchrun, "-m", "msrcnn_fast.train", "--config", config, "--no-progress"],
        cwd=REPO,
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,  # a rank left waiting for another would hang until this
    )
    assert ddp.returncode != 0
    assert ddp.stderr.count(f"output_dir {out} holds a run") == 1, ddp.stderr[-3000:]  # printed by rank 0 only
    # Every rank stops on the error (exit code 2); torchrun sends SIGTERM (-15) to a rank still
    # shutting down once another has exited, so a rank may end either way, but not by a timeout.
    codes = re.findall(r"exitcode  : (-?\d+)", ddp.stderr)
    assert "2" in codes and set(codes) <= {"2", "-15"}, ddp.stderr[-3000:]
    assert f'File "{os.path.join(REPO, "msrcnn_fast")}' not in ddp.stderr  # no traceback of ours
    assert snapshot(out) == files
