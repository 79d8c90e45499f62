import hashlib
import json
import os

import numpy as np
import pytest

from msrcnn_fast.data import CocoInstances, load_coco_instances, shapes
from msrcnn_fast.data.shapes import CATEGORIES, generate_image, main


def digest(folder):
    hashes = {}
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as file:
                hashes[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha256(file.read()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    assert (
        main(["--out", str(out), "--train", "24", "--val", "4", "--seed", "5", "--min-size", "64", "--max-size", "96"])
        == 0
    )
    return out


def test_the_files_are_a_valid_coco_dataset(generated):
    data = load_coco_instances(generated / "annotations" / "instances_train.json")
    assert len(data["images"]) == 24 and [c["name"] for c in data["categories"]] == CATEGORIES
    dataset = CocoInstances(
        image_dir=generated / "train", annotation_file=generated / "annotations" / "instances_train.json"
    )
    image, target = dataset[0]
    assert 64 <= image.shape[1] <= 96 and 64 <= image.shape[2] <= 96
    assert target["masks"].shape[1:] == image.shape[1:]
    assert len(os.listdir(generated / "val")) == 4


def test_it_has_what_mask_scoring_needs(generated):
    annotations = json.loads((generated / "annotations" / "instances_train.json").read_text())["annotations"]
    kinds = {type(a["segmentation"]).__name__ for a in annotations}
    assert kinds == {"list", "dict"}  # polygons and RLE
    assert len({a["category_id"] for a in annotations}) >= 5
    areas = [a["area"] for a in annotations if not a["iscrowd"]]
    assert max(areas) > 8 * min(areas)  # varied sizes
    per_image = {}
    for a in annotations:
        per_image.setdefault(a["image_id"], []).append(a)
    assert max(len(v) for v in per_image.values()) >= 4


def test_occluded_instances_keep_only_their_visible_pixels():
    for index in range(40):
        _, instances = generate_image(0, "train", index, min_size=64, max_size=96)
        masks = [mask for _, mask, _, _ in instances]
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                assert not (masks[i] & masks[j]).any()
        if any(polygon is None and not crowd for _, _, polygon, crowd in instances):
            return
    pytest.fail("no occluded instance in 40 images")


def test_every_instance_shows_most_of_itself_and_only_its_outer_half_leaves_the_image(monkeypatch):
    placed = []
    place_shapes = shapes._place_shapes

    def recording(*args):
        for shape in place_shapes(*args):
            placed.append(shape)
            yield shape

    monkeypatch.setattr(shapes, "_place_shapes", recording)
    occluded = cut = 0
    for index in range(40):
        placed.clear()
        pixels, instances = generate_image(0, "train", index, min_size=128, max_size=160)
        height, width = pixels.shape[:2]
        visible = [mask for _, mask, _, crowd in instances if not crowd]
        assert len(visible) == len(placed)
        for (_, whole, _, (cx, cy, size)), shown in zip(placed, visible):
            assert shown.sum() >= shapes.MIN_VISIBLE_FRACTION * whole.sum()
            reach = shapes.BORDER_REACH * size
            assert reach <= cx <= width - reach and reach <= cy <= height - reach
            occluded += bool((shown != whole).any())
            cut += bool(whole[0].any() or whole[-1].any() or whole[:, 0].any() or whole[:, -1].any())
    assert occluded >= 10 and cut >= 10  # masks still vary in quality: occlusion and the border


def test_the_same_seed_gives_the_same_files_and_more_images_keep_the_first(generated, tmp_path):
    main(
        [
            "--out",
            str(tmp_path / "a"),
            "--train",
            "30",
            "--val",
            "4",
            "--seed",
            "5",
            "--min-size",
            "64",
            "--max-size",
            "96",
        ]
    )
    first, again = digest(generated), digest(tmp_path / "a")
    assert all(again[name] == first[name] for name in first if name.endswith(".png"))
    assert first["annotations/instances_val.json"] == again["annotations/instances_val.json"]


def test_another_seed_gives_other_images():
    a, _ = generate_image(1, "train", 0, min_size=64, max_size=96)
    b, _ = generate_image(2, "train", 0, min_size=64, max_size=96)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_bad_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--train", "-1", "--val", "1"])
    assert "--train must be >= 0" in capsys.readouterr().err
