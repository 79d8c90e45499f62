"""The end-to-end path on hostile data (issue 12): train, evaluate and predict, in-process on the
tiny model, over a COCO-format set holding an image without annotations, zero-area polygons
(points equal, collinear), zero-width and zero-height bboxes, an all-zero RLE, a 1x1 image, a
1x200 strip, a 4000x3000 image and grayscale, RGBA, palette and 16-bit images
(tests/data/coco_files.py:write_hostile_coco). Clean means: exit code 0, finite losses and
metrics, every output written; a clear error only for a file that cannot be used."""

import json
import math
import os
import shutil

import pytest
import torch
from PIL import Image
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from msrcnn_fast.engine.build import build_model
from msrcnn_fast.engine.config import load_config
from msrcnn_fast.evaluate import main as evaluate_main
from msrcnn_fast.model.transform import DetectionTransform
from msrcnn_fast.predict import main as predict_main
from msrcnn_fast.train import main as train_main
from tests.data.coco_files import HUGE_HEIGHT, HUGE_WIDTH, write_hostile_coco
from tests.engine.conftest import tiny_config

IMAGES = "images"
ANNOTATIONS = "images/annotations.json"
NUM_IMAGES = 11
# Fewer detections at inference: their masks are pasted and drawn at 4000x3000.
FEWER_DETECTIONS = "model.box_detections_per_img=5"
UNUSABLE_WARNING = r"7 annotation\(s\) cannot be training targets and are left out: .*image 3 \(degenerate\.png\)"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as the CLI tests' subprocesses run: on the 2-core CI machine shared
    with other jobs, two spinning threads made this module 3.5x slower (81 s against 23 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    write_hostile_coco(root / IMAGES)
    return root


def hostile_config(folder, root, *, skip_empty=False, max_iter=4, data=None, images=IMAGES, annotations=ANNOTATIONS):
    """The tiny config on the hostile set (train and val alike), in a fresh output_dir. Three
    images per batch and four iterations: every image of the set goes through training."""
    split = {"images": images, "annotations": annotations}
    return tiny_config(
        folder / "config.yaml",
        root,
        folder / "out",
        solver={"images_per_batch": 3, "max_iter": max_iter, "lr_steps": [], "checkpoint_period": 0},
        data={"train": {**split, "skip_empty": skip_empty}, "val": split, "hflip_prob": 0.5, **(data or {})},
    )


def finite_metrics(output_dir):
    records = [json.loads(line) for line in open(os.path.join(output_dir, "metrics.jsonl"))]
    for record in records:
        losses = {k: v for k, v in record.items() if k.startswith("loss")}
        assert len(losses) == 7 and all(math.isfinite(v) for v in losses.values()), record
    return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory, hostile_root):
    """Trained with data.train.skip_empty false: the empty images are trained on as background."""
    folder = tmp_path_factory.mktemp("hostile_run")
    config = hostile_config(folder, hostile_root)
    with pytest.warns(UserWarning, match=UNUSABLE_WARNING):
        code = train_main(["--config", config, "--no-progress"])
    return config, folder / "out", code


def test_training_with_the_empty_images_is_clean(trained):
    config, output_dir, code = trained
    assert code == 0
    assert [r["iteration"] for r in finite_metrics(output_dir)] == [1, 2, 3, 4]
    assert (output_dir / "model_final.pth").exists()


def test_training_without_the_empty_images_is_clean(tmp_path, hostile_root):
    """Nine images, three iterations of three: each once, resized in the data pipeline too."""
    resize = {"train_min_size": 64, "train_max_size": 64}
    config = hostile_config(tmp_path, hostile_root, skip_empty=True, max_iter=3, data=resize)
    with pytest.warns(UserWarning, match=UNUSABLE_WARNING):
        assert train_main(["--config", config, "--no-progress"]) == 0
    assert [r["iteration"] for r in finite_metrics(tmp_path / "out")] == [1, 2, 3]


def test_evaluation_covers_every_image(trained, tmp_path):
    config, output_dir, _ = trained
    checkpoint = str(output_dir / "model_final.pth")
    argv = ["--config", config, "--checkpoint", checkpoint, "--out", str(tmp_path), "--no-progress"]
    assert evaluate_main([*argv, "--draw", "5", FEWER_DETECTIONS]) == 0
    results = json.loads((tmp_path / "evaluation.json").read_text())
    assert results["num_images"] == NUM_IMAGES
    for name in ("bbox", "segm_mask_rcnn", "segm_ms_rcnn", "segm_ms_rcnn_upper_bound"):
        assert all(math.isfinite(v) for k, v in results[name].items() if k not in ("summary", "per_category")), name
    assert sorted(os.listdir(tmp_path / "predictions")) == [f"{i}.png" for i in range(1, 6)]
    assert Image.open(tmp_path / "predictions" / "5.png").size == (1, 1)


def test_predict_writes_one_drawing_per_input(trained, hostile_root, tmp_path, capsys):
    config, output_dir, _ = trained
    folder = hostile_root / IMAGES
    names = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(folder / "gray.png", other / "gray.png")  # the same name from another folder
    inputs = [str(folder / n) for n in names] + [str(other / "gray.png")]
    argv = ["--config", config, "--checkpoint", str(output_dir / "model_final.pth"), "--score-thresh", "0"]
    assert predict_main([*argv, "--set", FEWER_DETECTIONS, "--out", str(tmp_path / "out"), *inputs]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == sorted([*names, "gray-2.png"])
    for name in names:
        with Image.open(folder / name) as original, Image.open(tmp_path / "out" / name) as drawn:
            assert drawn.size == original.size and drawn.mode == "RGB", name
    assert Image.open(tmp_path / "out" / "huge.png").size == (HUGE_WIDTH, HUGE_HEIGHT)
    assert capsys.readouterr().out.count("detections drawn") == NUM_IMAGES + 1


def test_predict_into_the_images_own_folder_replaces_no_image(trained, hostile_root, tmp_path):
    config, output_dir, _ = trained
    for name in ("gray.png", "rgba.png"):
        shutil.copy(hostile_root / IMAGES / name, tmp_path / name)
    originals = {name: (tmp_path / name).read_bytes() for name in ("gray.png", "rgba.png")}
    argv = ["--config", config, "--checkpoint", str(output_dir / "model_final.pth"), "--out", str(tmp_path)]
    assert predict_main([*argv, str(tmp_path / "gray.png"), str(tmp_path / "rgba.png")]) == 0
    assert sorted(os.listdir(tmp_path)) == ["gray-2.png", "gray.png", "rgba-2.png", "rgba.png"]
    assert all((tmp_path / name).read_bytes() == data for name, data in originals.items())


def test_predict_draws_the_readable_images_and_names_the_others(trained, hostile_root, tmp_path, capsys):
    config, output_dir, _ = trained
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    inputs = [str(tmp_path / "broken.png"), str(hostile_root / IMAGES / "one_pixel.png")]
    argv = ["--config", config, "--checkpoint", str(output_dir / "model_final.pth"), "--out", str(tmp_path / "out")]
    assert predict_main([*argv, *inputs]) == 2
    assert os.listdir(tmp_path / "out") == ["one_pixel.png"]
    err = capsys.readouterr().err
    assert "broken.png: cannot read image: " in err and "1 of 2 images could not be read" in err


def test_a_training_set_without_images_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    empty = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "red"}]}
    (tmp_path / "data" / "annotations.json").write_text(json.dumps(empty))
    config = hostile_config(tmp_path, tmp_path, images="data", annotations="data/annotations.json")
    assert train_main(["--config", config, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "data.train: " in err and "annotations.json lists no image to train on" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_unreadable_training_image_is_a_clear_error(trained, hostile_root, tmp_path, capsys):
    """A truncated file cannot be used: train and evaluate stop with exit code 2 and a message
    naming the file, not a traceback (also when a DataLoader worker read it)."""
    folder = tmp_path / "data"
    folder.mkdir()
    data = json.loads((hostile_root / ANNOTATIONS).read_text())
    data["images"] = [i for i in data["images"] if i["id"] == 1]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == 1]
    (folder / "annotations.json").write_text(json.dumps(data))
    png = (hostile_root / IMAGES / "good.png").read_bytes()
    (folder / "good.png").write_bytes(png[: len(png) // 2])
    config = hostile_config(tmp_path, tmp_path, images="data", annotations="data/annotations.json")
    for workers in (0, 1):
        assert train_main(["--config", config, "--no-progress", f"data.num_workers={workers}"]) == 2
        err = capsys.readouterr().err
        assert "good.png: cannot read image: " in err and "Traceback" not in err, err
    checkpoint = str(trained[1] / "model_final.pth")
    assert evaluate_main(["--config", config, "--checkpoint", checkpoint, "--out", str(tmp_path / "e")]) == 2
    assert "good.png: cannot read image: " in capsys.readouterr().err


@pytest.mark.parametrize("size", [(1, 200), (3, 1000), (200, 1), (1, 1), (300, 400), (37, 53)])
@pytest.mark.parametrize("training", [False, True])
def test_the_model_resizes_any_shape_as_torchvision_does_where_it_can(size, training):
    """torchvision's resize fails on a strip whose short side rounds down to 0 pixels; ours keeps
    one pixel there, and torchvision's result wherever it has one."""
    ours, theirs = (
        DetectionTransform(64, 64, [0.5] * 3, [0.2] * 3),
        GeneralizedRCNNTransform(64, 64, [0.5] * 3, [0.2] * 3),
    )
    ours.train(training), theirs.train(training)
    height, width = size
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    target = {
        "boxes": torch.tensor([[0.0, 0.0, width, height]]),
        "masks": torch.ones(1, height, width, dtype=torch.uint8),
    }
    resized, resized_target = ours.resize(image, dict(target))
    assert min(resized.shape[-2:]) >= 1 and resized_target["masks"].shape[-2:] == resized.shape[-2:]
    assert torch.isfinite(resized_target["boxes"]).all()
    if min(size) * 64 / max(size) >= 1:
        expected, expected_target = theirs.resize(image, dict(target))
        assert torch.equal(resized, expected) and torch.equal(resized_target["boxes"], expected_target["boxes"])
        assert torch.equal(resized_target["masks"], expected_target["masks"])
    else:
        with pytest.raises(RuntimeError, match="Input and output sizes should be greater than 0"):
            theirs.resize(image, dict(target))


def test_a_batch_without_any_target_trains_with_finite_losses_and_gradients(tmp_path, hostile_root):
    """Every image of a batch may lack annotations (skip_empty false): the RPN, box, mask and
    MaskIoU losses must then be finite (zero where there is nothing to learn), as their gradients."""
    model = build_model(load_config(hostile_config(tmp_path, hostile_root)), num_classes=3).train()
    sizes = [(64, 64), (1, 1), (1, 200)]
    images = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * w)) for h, w in sizes]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    targets = [{**empty, "masks": torch.zeros(0, h, w, dtype=torch.uint8)} for h, w in sizes]
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert float(losses["loss_mask"].detach()) == 0 and float(losses["loss_box_reg"].detach()) == 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
