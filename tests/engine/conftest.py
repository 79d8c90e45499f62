"""A tiny dataset (64x64 images, two rectangles each) and tiny configs for the engine tests."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.data.coco_files import annotation, compressed_rle

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 64


def write_rectangles_split(folder, split, count, seed):
    """`count` images, each with one rectangle of category 1 and one of category 2 (polygon and RLE)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, split), exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        pixels = (rng.random((SIZE, SIZE, 3)) * 60).astype(np.uint8)
        for category in (1, 2):
            x1, y1 = (int(v) for v in rng.integers(2, 30, size=2))
            w, h = (int(v) for v in rng.integers(14, 30, size=2))
            x2, y2 = min(x1 + w, SIZE - 1), min(y1 + h, SIZE - 1)
            pixels[y1:y2, x1:x2] = (200, 60, 60) if category == 1 else (60, 200, 200)
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[y1:y2, x1:x2] = 1
            polygon = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            segmentation = polygon if category == 1 else compressed_rle(mask)
            annotations.append(annotation(len(annotations) + 1, index + 1, category, mask, segmentation))
        name = f"{index:04d}.png"
        Image.fromarray(pixels).save(os.path.join(folder, split, name))
        images.append({"id": index + 1, "file_name": name, "height": SIZE, "width": SIZE})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "cyan"}],
    }
    with open(os.path.join(folder, f"{split}.json"), "w") as file:
        json.dump(data, file)


@pytest.fixture(scope="session")
def rectangles_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rectangles")
    write_rectangles_split(root, "train", 8, seed=0)
    write_rectangles_split(root, "val", 3, seed=1)
    return root


# The real MS R-CNN, made small: R-18 FPN on C2 + C3 with 32 channels, narrow heads, 64 px.
TINY_MODEL = {
    "name": "msrcnn_resnet18_fpn",
    "returned_stages": [2, 3],
    "fpn_channels": 32,
    "norm": "gn",
    "trainable_backbone_layers": 5,
    "min_size": SIZE,
    "max_size": SIZE,
    "box_fc_dim": 32,
    "mask_conv_dim": 8,
    "maskiou_conv_dim": 8,
    "maskiou_fc_dim": 32,
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 40,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 30,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 20,
}


def write_config(tmp_path, text):
    """Writes the YAML `text` to tmp_path/c.yaml; returns its path."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def tiny_config(path, root, output_dir, *, model=None, solver=None, data=None, sections=None):
    """Writes a config for the tiny model on the rectangles dataset (and `sections`, other
    top-level sections such as log or evaluation); returns its path."""
    config = {
        "model": {**TINY_MODEL, **(model or {})},
        "data": {
            "root": str(root),
            "train": {"images": "train", "annotations": "train.json"},
            "val": {"images": "val", "annotations": "val.json"},
            "num_workers": 0,
            **(data or {}),
        },
        "solver": {
            "images_per_batch": 2,
            "base_lr": 0.02,
            "warmup_iters": 2,
            "max_iter": 6,
            "lr_steps": [4],
            "checkpoint_period": 2,
            "log_period": 1,
            **(solver or {}),
        },
        "test": {"images_per_batch": 2, "max_detections": 20},
        "device": "cpu",
        "output_dir": str(output_dir),
        **(sections or {}),
    }
    with open(path, "w") as file:
        yaml.safe_dump(config, file)
    return str(path)


def run_cli(module, *args, env=None, **popen):
    """Runs `python -m msrcnn_fast.MODULE ARGS` from the repository root (one thread)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", f"msrcnn_fast.{module}", *args], cwd=REPO, env=environment, **popen)
