import copy
import json
import os

import numpy as np
import pytest
import torch

from msrcnn_fast.data import CocoFormatError, CocoInstances
from tests.data.coco_files import tiny_coco, write_coco


@pytest.fixture
def coco_dir(tmp_path):
    data, masks = tiny_coco()
    path = write_coco(tmp_path, data)
    return tmp_path, path, masks


def test_polygon_and_rle_masks_decode_to_the_drawn_pixels(coco_dir):
    folder, path, masks = coco_dir
    dataset = CocoInstances(image_dir=folder, annotation_file=path)
    image, target = dataset[0]
    assert image.shape == (3, 40, 48) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert target["masks"].dtype == torch.uint8
    assert torch.equal(target["masks"][0], torch.from_numpy(masks[1]))  # polygon
    assert torch.equal(target["masks"][1], torch.from_numpy(masks[2]))  # compressed RLE
    assert torch.equal(target["boxes"], torch.tensor([[4.0, 6, 20, 22], [24, 10, 44, 30]]))
    _, target = dataset[1]
    assert torch.equal(target["masks"][0], torch.from_numpy(masks[3]))  # uncompressed RLE


def test_labels_are_contiguous_in_category_id_order(coco_dir):
    folder, path, _ = coco_dir
    dataset = CocoInstances(image_dir=folder, annotation_file=path)
    assert dataset.category_ids == [3, 7, 9] and dataset.num_classes == 4
    assert dataset[0][1]["labels"].tolist() == [1, 2]


def test_crowd_regions_are_left_out_of_training_targets(coco_dir):
    folder, path, _ = coco_dir
    _, target = CocoInstances(image_dir=folder, annotation_file=path)[1]
    assert target["labels"].tolist() == [1] and target["masks"].shape == (1, 40, 48)


def test_images_without_annotations_are_kept_or_skipped(coco_dir):
    folder, path, _ = coco_dir
    kept = CocoInstances(image_dir=folder, annotation_file=path)
    assert kept.image_ids == [1, 2, 3]
    _, empty = kept[2]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["masks"].shape == (0, 40, 48)
    assert CocoInstances(image_dir=folder, annotation_file=path, skip_empty=True).image_ids == [1, 2]


def test_an_image_with_only_crowd_regions_counts_as_empty(tmp_path):
    data, _ = tiny_coco()
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 2 or a["iscrowd"]]
    path = write_coco(tmp_path, data)
    assert CocoInstances(image_dir=tmp_path, annotation_file=path, skip_empty=True).image_ids == [1]


def test_seeded_items_repeat_their_augmentation(coco_dir):
    from msrcnn_fast.data import RandomHorizontalFlip

    folder, path, _ = coco_dir
    dataset = CocoInstances(image_dir=folder, annotation_file=path, transforms=RandomHorizontalFlip(0.5))
    first = [dataset[(0, seed)][1]["boxes"] for seed in range(8)]
    again = [dataset[(0, seed)][1]["boxes"] for seed in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({tuple(b[0].tolist()) for b in first}) == 2  # both outcomes occur across seeds


def test_without_targets_gives_only_the_image_id(coco_dir):
    folder, path, _ = coco_dir
    image, target = CocoInstances(image_dir=folder, annotation_file=path, with_targets=False)[1]
    assert target == {"image_id": 2} and image.shape == (3, 40, 48)


def test_a_missing_image_file_is_named(coco_dir):
    folder, path, _ = coco_dir
    os.remove(os.path.join(folder, "img2.png"))
    with pytest.raises(
        FileNotFoundError, match=r"annotations\.json: image 1 \(id 2\): file .*img2\.png does not exist"
    ):
        CocoInstances(image_dir=folder, annotation_file=path)


def test_an_image_whose_size_differs_from_the_annotation_file_is_named(tmp_path):
    data, _ = tiny_coco()
    path = write_coco(tmp_path, data)
    bigger = copy.deepcopy(data)
    bigger["images"][0]["height"] = 41
    bigger["annotations"] = [a for a in bigger["annotations"] if a["image_id"] != 1]
    with open(path, "w") as file:
        json.dump(bigger, file)
    with pytest.raises(ValueError, match=r"img1\.png: image is 48x40 .* says 48x41 for image id 1"):
        CocoInstances(image_dir=tmp_path, annotation_file=path)[0]


def test_a_corrupt_image_file_is_named(coco_dir):
    folder, path, _ = coco_dir
    with open(os.path.join(folder, "img1.png"), "wb") as file:
        file.write(b"not a png")
    with pytest.raises(
        CocoFormatError, match=r"img1\.png: cannot read image: .* \(image id 1 of .*annotations\.json\)"
    ):
        CocoInstances(image_dir=folder, annotation_file=path)[0]


def test_annotation_errors_surface_from_the_dataset(coco_dir):
    folder, path, _ = coco_dir
    with open(path) as file:
        data = json.load(file)
    data["annotations"][1]["category_id"] = 5
    with open(path, "w") as file:
        json.dump(data, file)
    with pytest.raises(CocoFormatError, match=r"annotation 1 \(id 2\): category_id 5 is not in categories \[3, 7, 9\]"):
        CocoInstances(image_dir=folder, annotation_file=path)


def test_degenerate_boxes_are_dropped_from_targets(tmp_path):
    data, _ = tiny_coco()
    data["annotations"][0]["bbox"] = [4, 6, 0.5, 16]
    path = write_coco(tmp_path, data)
    with pytest.warns(UserWarning, match=r"image 1 \(img1\.png\) annotation 1: bbox \[4, 6, 0\.5, 16\] covers less"):
        dataset = CocoInstances(image_dir=tmp_path, annotation_file=path)
    _, target = dataset[0]
    assert target["labels"].tolist() == [2] and np.array_equal(target["boxes"].shape, (1, 4))
