"""The dataset and the image reader on hostile inputs: unusable annotations, images without
any, and images of every PIL mode and extreme size (tests/data/coco_files.py:write_hostile_coco)."""

import json
import os
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from msrcnn_fast.data import CocoFormatError, CocoInstances, ImageFileError, read_rgb
from tests.data.coco_files import HUGE_HEIGHT, HUGE_WIDTH, write_hostile_coco


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    path, expected = write_hostile_coco(folder)
    return folder, path, expected


def load(folder, path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoInstances(image_dir=folder, annotation_file=path, **kwargs)
    return dataset, [str(w.message) for w in caught]


def test_unusable_annotations_are_left_out_with_one_warning_naming_each(hostile):
    folder, path, expected = hostile
    _, messages = load(folder, path)
    assert len(messages) == 1
    message = messages[0]
    assert message.startswith(f"{path}: 7 annotation(s) cannot be training targets and are left out")
    for annotation_id, image_id in expected["unusable"].items():
        assert re.search(rf"image {image_id} \(\w+\.png\) annotation {annotation_id}: ", message), annotation_id
    for reason in (
        "annotation 4: bbox [10, 10, 0, 0] has zero width",  # all points equal
        "annotation 5: its polygon encloses no area (its points coincide or are collinear)",  # collinear
        "annotation 6: bbox [44, 4, 0, 20] has zero width",
        "annotation 7: bbox [44, 40, 16, 0] has zero height",
        "annotation 8: its RLE mask is all zeros",
    ):
        assert reason in message


def test_targets_hold_exactly_the_usable_annotations(hostile):
    folder, path, expected = hostile
    dataset, _ = load(folder, path)
    annotations = {a["id"]: a for a in dataset.coco.dataset["annotations"]}
    for index, image_id in enumerate(dataset.image_ids):
        image, target = dataset[index]
        info = dataset.coco.imgs[image_id]
        usable = expected["usable"][image_id]
        assert image.shape == (3, info["height"], info["width"]) and image.dtype == torch.float32
        assert target["boxes"].shape == (len(usable), 4) and target["labels"].shape == (len(usable),)
        assert target["masks"].shape == (len(usable), info["height"], info["width"])
        boxes = target["boxes"]
        assert bool((boxes[:, 2:] - boxes[:, :2] >= 1).all()), image_id
        assert all(int(mask.sum()) > 0 for mask in target["masks"]), image_id
        assert target["labels"].tolist() == [annotations[a]["category_id"] for a in usable]


def test_skip_empty_drops_the_images_without_a_usable_annotation(hostile):
    folder, path, expected = hostile
    dataset, _ = load(folder, path, skip_empty=True)
    assert dataset.image_ids == [i for i, usable in expected["usable"].items() if usable]
    assert 2 not in dataset.image_ids and 4 not in dataset.image_ids  # empty, only degenerate
    everything, _ = load(folder, path, skip_empty=False)
    assert everything.image_ids == list(expected["usable"])


def test_skip_empty_that_leaves_no_image_is_a_format_error(hostile, tmp_path):
    folder, path, _ = hostile
    data = json.loads(open(path).read())
    data["images"] = [image for image in data["images"] if image["id"] in (2, 4)]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in (2, 4)]
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match=r"a\.json: no image has a usable annotation, so skip_empty leaves no"):
        load(folder, tmp_path / "a.json", skip_empty=True)


def test_inference_reads_the_annotations_unchecked_and_quietly(hostile):
    folder, path, _ = hostile
    dataset, messages = load(folder, path, with_targets=False)
    assert messages == [] and len(dataset) == 11


def test_a_polygon_that_covers_no_pixel_is_left_out_when_loaded(tmp_path):
    """Its area (3 px) passes the cheap check; rasterised, it covers nothing."""
    folder = tmp_path / "data"
    path, _ = write_hostile_coco(folder)
    data = json.loads(open(path).read())
    sliver = [1.2, 1.2, 61.2, 61.25, 61.25, 61.2]
    data["annotations"].append(
        {"id": 99, "image_id": 1, "category_id": 2, "bbox": [1.2, 1.2, 60.05, 60.05], "area": 3.0, "iscrowd": 0,
         "segmentation": [sliver]}
    )  # fmt: skip
    with open(path, "w") as file:
        json.dump(data, file)
    dataset, _ = load(folder, path)
    with pytest.warns(UserWarning, match=r"left out image 1 \(good\.png\) annotation 99: its polygon covers no pixel"):
        _, target = dataset[0]
    assert target["labels"].tolist() == [1, 2] and target["masks"].sum((1, 2)).min() > 0


@pytest.mark.parametrize("name", ["gray.png", "rgba.png", "palette.png", "gray16.png"])
def test_every_image_mode_reads_as_rgb_in_0_1(hostile, name):
    folder, _, _ = hostile
    image = read_rgb(folder / name)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    with Image.open(folder / name) as original:
        expected = np.asarray(original.convert("RGBA" if original.mode == "I;16" else "RGB"))
        if original.mode == "I;16":  # written as 8-bit gray x 257: reads as that gray / 255
            expected = np.repeat((np.asarray(original) // 257).astype(np.uint8)[:, :, None], 3, axis=2)
    assert torch.equal(image, torch.from_numpy(expected[:, :, :3].copy()).permute(2, 0, 1).float() / 255)


def test_16_bit_pixels_keep_their_range(hostile):
    """PIL's own conversion of an I;16 image to RGB clips every value above 255 to white."""
    folder, _, _ = hostile
    gray16, gray8 = read_rgb(folder / "gray16.png"), read_rgb(folder / "gray.png")
    assert gray16.max() < 1 and 0.1 < gray16.mean() < 0.5
    with Image.open(folder / "gray16.png") as original:
        assert np.asarray(original.convert("RGB")).mean() > 250  # what the old reader returned
    assert gray16.shape == gray8.shape and float((gray16 - gray16.mean()).abs().max()) > 0


def test_the_extreme_sizes_read_at_their_size(hostile):
    folder, _, _ = hostile
    assert read_rgb(folder / "one_pixel.png").shape == (3, 1, 1)
    assert read_rgb(folder / "strip.png").shape == (3, 1, 200)
    assert read_rgb(folder / "huge.png").shape == (3, HUGE_HEIGHT, HUGE_WIDTH)


def test_images_that_cannot_be_used_are_named_with_the_reason(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32), mode="F").save(tmp_path / "float.tiff")
    with pytest.raises(ImageFileError, match=r"float\.tiff: floating-point pixels \(PIL mode F\) have no defined"):
        read_rgb(tmp_path / "float.tiff")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageFileError, match=r"empty\.png: cannot read image: cannot identify image file"):
        read_rgb(tmp_path / "empty.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFileError, match=r"cut\.png: cannot read image: "):
        read_rgb(tmp_path / "cut.png")
    assert issubclass(ImageFileError, CocoFormatError) and os.path.exists(tmp_path / "cut.png")
