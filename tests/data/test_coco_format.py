"""Malformed annotation files give a CocoFormatError naming the file and the entry."""

import json

import pytest

from msrcnn_fast.data import CocoFormatError, load_coco_instances
from tests.data.coco_files import tiny_coco


def write(tmp_path, data):
    path = tmp_path / "annotations.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def broken(edit):
    data, _ = tiny_coco()
    edit(data)
    return data


def test_a_valid_file_loads_and_gets_defaults(tmp_path):
    data, _ = tiny_coco()
    del data["annotations"][0]["area"], data["annotations"][0]["iscrowd"]
    loaded = load_coco_instances(write(tmp_path, data))
    assert loaded["annotations"][0]["iscrowd"] == 0
    assert loaded["annotations"][0]["area"] == 256.0  # pycocotools' COCOeval needs both


def test_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json: annotation file does not exist"):
        load_coco_instances(tmp_path / "nope.json")


def test_invalid_json(tmp_path):
    with pytest.raises(CocoFormatError, match=r"annotations\.json: not valid JSON: .*line 1 column"):
        load_coco_instances(write(tmp_path, '{"images": [}'))


CASES = [
    (lambda d: d.pop("categories"), r"missing the top-level key 'categories'"),
    (lambda d: d.update(images={}), r"'images' must be a list, got dict"),
    (lambda d: d["images"].append(5), r"images entry 3 must be an object, got int"),
    (lambda d: d["images"][1].pop("file_name"), r"image 1 \(id 2\): missing 'file_name'"),
    (lambda d: d["images"][2].update(height=0), r"image 2 \(id 3\): height must be a positive integer, got 0"),
    (lambda d: d["images"][2].update(id=1), r"image 2 \(id 1\): image id 1 appears twice"),
    (lambda d: d["categories"][1].update(id=3), r"category ids are not unique: \[3, 3, 9\]"),
    (
        lambda d: d["annotations"][2].update(category_id=4),
        r"annotation 2 \(id 3\): category_id 4 is not in categories \[3, 7, 9\]",
    ),
    (lambda d: d["annotations"][0].update(image_id=99), r"annotation 0 \(id 1\): image_id 99 is not in images"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), r"annotation 1 \(id 2\): bbox must be \[x, y, w, h\]"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, -3, 4]), r"annotation 1 \(id 2\): bbox .* negative width"),
    (lambda d: d["annotations"][1].update(iscrowd=2), r"annotation 1 \(id 2\): iscrowd must be 0 or 1, got 2"),
    (lambda d: d["annotations"][0].pop("segmentation"), r"annotation 0 \(id 1\): missing 'segmentation'"),
    (lambda d: d["annotations"][0].update(segmentation=[]), r"annotation 0 \(id 1\): segmentation is an empty list"),
    (
        lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5]]),
        r"annotation 0 \(id 1\): polygon 0 needs an even number \(>= 6\) of coordinates, got 5",
    ),
    (
        lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5, "x"]]),
        r"annotation 0 \(id 1\): polygon 0 must be a list of numbers",
    ),
    (
        lambda d: d["annotations"][1]["segmentation"].update(size=[40, 47]),
        r"annotation 1 \(id 2\): RLE size \[40, 47\] differs from its image's \[height, width\] \[40, 48\]",
    ),
    (
        lambda d: d["annotations"][2]["segmentation"]["counts"].append(1),
        r"annotation 2 \(id 3\): uncompressed RLE counts must be non-negative integers summing to height \* width",
    ),
    (lambda d: d["annotations"][1].update(segmentation="abc"), r"annotation 1 \(id 2\): segmentation must be a list"),
]


@pytest.mark.parametrize("edit, message", CASES, ids=[m[:40] for _, m in CASES])
def test_malformed_entries_are_named(tmp_path, edit, message):
    path = write(tmp_path, broken(edit))
    with pytest.raises(CocoFormatError, match=r"annotations\.json: " + message):
        load_coco_instances(path)
