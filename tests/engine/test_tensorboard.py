"""log.tensorboard: the run's event files, read back with tensorboard's own event reader."""

import os

import pytest

from msrcnn_fast.engine.config import ConfigError, load_config
from msrcnn_fast.evaluate import main as evaluate_main
from msrcnn_fast.train import main as train_main
from tests.engine.conftest import tiny_config

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def events(folder):
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, rectangles_root):
    folder = tmp_path_factory.mktemp("tensorboard")
    config = tiny_config(
        folder / "c.yaml",
        rectangles_root,
        folder / "out",
        solver={"max_iter": 4},
        sections={"log": {"tensorboard": True}},
    )
    assert train_main(["--config", config, "--no-progress"]) == 0
    checkpoint = folder / "out" / "model_final.pth"
    assert (
        evaluate_main(
            ["--config", config, "--checkpoint", str(checkpoint), "--out", str(folder / "eval"), "--no-progress"]
        )
        == 0
    )
    return config, folder / "out"


def test_training_scalars_are_written_at_every_logged_iteration(logged_run):
    _, out = logged_run
    board = events(out / "tensorboard")
    tags = set(board.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/seconds_per_iter", "train/loss_maskiou", "train/loss_mask"} <= tags
    assert [e.step for e in board.Scalars("train/loss")] == [1, 2, 3, 4]  # log_period 1
    lrs = [e.value for e in board.Scalars("train/lr")]
    assert lrs[0] < lrs[-1] or lrs[-1] < 0.02  # warm-up, then the step at 4: the lr changed
    assert all(e.value > 0 for e in board.Scalars("train/seconds_per_iter"))


def test_the_evaluation_writes_the_table_the_correlations_and_fig5(logged_run):
    _, out = logged_run
    board = events(out / "tensorboard")
    tags = set(board.Tags()["scalars"])
    for row in ("segm_mask_rcnn", "segm_ms_rcnn", "segm_ms_rcnn_upper_bound", "bbox"):
        assert f"{row}/AP" in {t.removeprefix("eval/") for t in tags}
        (ap,) = board.Scalars(f"eval/{row}/AP")
        assert ap.step == 4 and 0 <= ap.value <= 100  # at the checkpoint's iteration, in percent
    assert "eval/maskiou/detections" in tags and "eval/classification/gt_box_accuracy" in tags
    (image,) = board.Images("eval/fig5")
    assert image.step == 4 and image.width > 100 and image.height > 100


def test_off_by_default_and_an_overwritten_run_starts_a_new_log(tmp_path, rectangles_root, logged_run):
    assert load_config(tiny_config(tmp_path / "d.yaml", rectangles_root, tmp_path / "o")).log.tensorboard is False
    config, out = logged_run
    assert train_main(["--config", config, "--no-progress", "--overwrite", "solver.max_iter=2"]) == 0
    assert [e.step for e in events(out / "tensorboard").Scalars("train/loss")] == [1, 2]
    plain = tiny_config(tmp_path / "p.yaml", rectangles_root, tmp_path / "plain", solver={"max_iter": 1})
    assert train_main(["--config", plain, "--no-progress"]) == 0
    assert not os.path.exists(tmp_path / "plain" / "tensorboard")


def test_a_bad_value_is_a_config_error(tmp_path, rectangles_root):
    path = tiny_config(tmp_path / "c.yaml", rectangles_root, tmp_path / "o", sections={"log": {"tensorboard": "yes"}})
    with pytest.raises(ConfigError, match="log.tensorboard"):
        load_config(path)
