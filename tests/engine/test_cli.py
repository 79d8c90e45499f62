"""The command lines: evaluate, predict, demo, and their errors (in-process, the tiny model)."""

import json
import os

import pytest
from PIL import Image

from msrcnn_fast.data import shapes
from msrcnn_fast.demo import main as demo_main
from msrcnn_fast.engine.build import schedule_in_iterations
from msrcnn_fast.engine.config import load_config
from msrcnn_fast.evaluate import main as evaluate_main
from msrcnn_fast.predict import main as predict_main
from msrcnn_fast.train import main as train_main
from tests.engine.conftest import REPO, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, rectangles_root):
    folder = tmp_path_factory.mktemp("trained")
    config = tiny_config(folder / "c.yaml", rectangles_root, folder / "out", solver={"max_iter": 4})
    assert train_main(["--config", config, "--no-progress"]) == 0
    return config, str(folder / "out" / "model_final.pth")


def test_evaluate_prints_the_table_and_writes_json_and_plots(trained, tmp_path, capsys):
    config, checkpoint = trained
    argv = ["--config", config, "--checkpoint", checkpoint, "--out", str(tmp_path), "--no-progress", "--draw", "2"]
    assert evaluate_main(argv) == 0
    printed = capsys.readouterr().out
    for row in ("Mask R-CNN  segm", "MS R-CNN    segm", "MS R-CNN*", "box AP", "Pearson r, predicted vs ground-truth"):
        assert row in printed
    for row in ("which part is weak:", "classifier: the box head calls", "class-correct detections", "per category"):
        assert row in printed
    results = json.loads((tmp_path / "evaluation.json").read_text())
    assert results["num_images"] == 3 and set(results["segm_ms_rcnn"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    classification = results["classification"]
    assert classification["gt_boxes"] == sum(sum(row) for row in classification["confusion"]["counts"]) > 0
    assert 0 <= classification["gt_box_accuracy"] <= 1
    assert {"pearson_class_correct", "pearson_training_positives", "training_positives"} <= set(results["maskiou"])
    assert results["maskiou"]["training_positives"] >= classification["gt_boxes"]  # each ground-truth box is one
    assert set(results["segm_per_category"]) == {"red", "cyan"}
    assert set(results["segm_per_category"]["red"]) == {"segm_mask_rcnn", "segm_ms_rcnn"}
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".png")) == [
        "confusion_gt_boxes.png",
        "fig2ab_score_vs_maskiou.png",
        "fig2c_mean_score_per_maskiou_bin.png",
        "fig5_predicted_vs_gt_maskiou.png",
    ]
    assert sorted(os.listdir(tmp_path / "predictions")) == ["1.png", "2.png"]


def test_evaluate_a_subset(trained, tmp_path, capsys):
    config, checkpoint = trained
    argv = [
        "--config",
        config,
        "--checkpoint",
        checkpoint,
        "--out",
        str(tmp_path),
        "--max-images",
        "1",
        "--no-progress",
    ]
    assert evaluate_main(argv) == 0
    assert json.loads((tmp_path / "evaluation.json").read_text())["num_images"] == 1


def test_evaluate_refuses_a_checkpoint_of_other_categories(trained, tmp_path, rectangles_root, capsys):
    config, checkpoint = trained
    data = json.loads((rectangles_root / "val.json").read_text())
    for category in data["categories"]:
        category["id"] += 10
    for annotation in data["annotations"]:
        annotation["category_id"] += 10
    (tmp_path / "val.json").write_text(json.dumps(data))
    argv = ["--config", config, "--checkpoint", checkpoint, f"data.val.annotations={tmp_path / 'val.json'}"]
    assert evaluate_main(argv) == 2
    assert "trained on category ids [1, 2], but the evaluation data has [11, 12]" in capsys.readouterr().err


def test_evaluate_a_missing_checkpoint(trained, capsys):
    config, _ = trained
    assert evaluate_main(["--config", config, "--checkpoint", "/nonexistent.pth"]) == 2
    assert "/nonexistent.pth: checkpoint does not exist" in capsys.readouterr().err


def test_predict_draws_each_image(trained, tmp_path, rectangles_root, capsys):
    config, checkpoint = trained
    images = [str(rectangles_root / "val" / name) for name in ("0000.png", "0001.png")]
    argv = ["--config", config, "--checkpoint", checkpoint, *images, "--out", str(tmp_path), "--score-thresh", "0"]
    assert predict_main(argv) == 0
    assert sorted(os.listdir(tmp_path)) == ["0000.png", "0001.png"]
    assert Image.open(tmp_path / "0000.png").size == (64, 64)
    assert "detections drawn" in capsys.readouterr().out


def test_predict_names_missing_and_unreadable_images(trained, tmp_path, capsys):
    config, checkpoint = trained
    argv = ["--config", config, "--checkpoint", checkpoint, "--out", str(tmp_path)]
    assert predict_main([*argv, "/no/such.png"]) == 2
    assert "image file(s) not found: /no/such.png" in capsys.readouterr().err
    (tmp_path / "text.png").write_text("not an image")
    assert predict_main([*argv, str(tmp_path / "text.png")]) == 2
    assert "text.png: cannot read image" in capsys.readouterr().err


def test_train_reports_bad_inputs_without_a_traceback(tmp_path, rectangles_root, capsys):
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, tmp_path / "out")
    assert train_main(["--config", config, "solver.bse_lr=1"]) == 2
    assert "unknown key 'solver.bse_lr'" in capsys.readouterr().err
    assert train_main(["--config", config, "data.train.annotations=none.json"]) == 2
    assert "none.json: annotation file does not exist" in capsys.readouterr().err
    data = json.loads((rectangles_root / "train.json").read_text())
    data["annotations"][3]["category_id"] = 9
    (tmp_path / "bad.json").write_text(json.dumps(data))
    assert train_main(["--config", config, f"data.train.annotations={tmp_path / 'bad.json'}"]) == 2
    assert "bad.json: annotation 3 (id 4): category_id 9 is not in categories [1, 2]" in capsys.readouterr().err
    assert train_main(["--config", config, "solver.images_per_batch=3"]) == 0


def test_the_demo_generates_trains_evaluates_and_draws(tmp_path, capsys):
    config = tiny_config(
        tmp_path / "demo.yaml",
        tmp_path / "shapes",
        tmp_path / "out",
        solver={"max_iter": 2, "checkpoint_period": 0},
        data={
            "train": {"images": "train", "annotations": "annotations/instances_train.json"},
            "val": {"images": "val", "annotations": "annotations/instances_val.json"},
            "shapes": {"train": 4, "val": 2, "seed": 0, "min_size": 64, "max_size": 80},
        },
    )
    assert demo_main(["--config", config, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "generated 4 train images" in printed and "MS R-CNN    segm" in printed and "demo done" in printed
    assert (tmp_path / "out" / "eval" / "evaluation.json").exists()
    assert len(os.listdir(tmp_path / "out" / "eval" / "predictions")) == 2
    trained = {name: (tmp_path / "out" / name).read_bytes() for name in ("model_final.pth", "metrics.jsonl")}
    # a second run finds the data and the trained model: it resumes the finished run (no refusal of
    # its output_dir, no training) and only evaluates
    assert demo_main(["--config", config, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "generated" not in printed and "MS R-CNN    segm" in printed and "demo done" in printed
    assert f"resuming from {tmp_path / 'out' / 'model_final.pth'} (iteration 2 of 2)" in printed
    assert {name: (tmp_path / "out" / name).read_bytes() for name in trained} == trained
    # a dataset written by an earlier version of the generator is written again, and only that split
    annotations = tmp_path / "shapes" / "annotations" / "instances_val.json"
    data = json.loads(annotations.read_text())
    data["info"]["version"] = "0"
    annotations.write_text(json.dumps(data))
    assert demo_main(["--config", config, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "instances_val.json was written by an earlier version" in printed
    assert "generated 2 val images" in printed and "generated 4 train" not in printed
    assert json.loads(annotations.read_text())["info"]["version"] == shapes.VERSION


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(REPO, "configs")) if n.endswith(".yaml")))
def test_shipped_configs_load(name):
    cfg = load_config(os.path.join(REPO, "configs", name))
    assert cfg.model.name in {
        "msrcnn_resnet18_fpn", "msrcnn_resnet50_fpn", "msrcnn_resnet101_fpn", "msrcnn_resnet101_dcn_fpn"
    }  # fmt: skip
    if name.startswith("coco_"):  # 18 epochs, x0.1 after 14 and 17, on COCO train2017's 117266 annotated images
        iterations_per_epoch = 117266 // 16 + 1
        assert schedule_in_iterations(cfg, train_size=117266) == (
            18 * iterations_per_epoch,
            [14 * iterations_per_epoch, 17 * iterations_per_epoch],
        )
