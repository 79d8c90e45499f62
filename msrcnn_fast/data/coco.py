"""COCO-format instance segmentation dataset (polygon and RLE masks)."""

import contextlib
import io
import os

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from msrcnn_fast.data.coco_format import load_coco_instances, segmentation_rle


class CocoInstances(torch.utils.data.Dataset):
    """Images and instance targets from a COCO-format annotation file.

    Item `index` is `(image, target)`: image a float tensor [3, H, W] in 0-1 at the file's size
    (then `transforms`), target a dict with `boxes` float [N, 4] (x1, y1, x2, y2, pixels),
    `labels` int64 [N] (1..num_categories, 0 is background), `masks` uint8 [N, H, W] and
    `image_id` (int). Crowd regions are left out of the targets (the detector has no ignore
    regions), as are boxes narrower or shorter than one pixel.

    Labels are contiguous: the categories sorted by id get 1, 2, ...; `category_ids[label - 1]`
    maps back. `skip_empty` drops images with no (non-crowd) instance; `with_targets=False`
    yields `(image, {"image_id": ...})` only, for inference.
    """

    def __init__(self, *, image_dir, annotation_file, transforms=None, skip_empty=False, with_targets=True):
        self.image_dir = os.fspath(image_dir)
        self.annotation_file = os.fspath(annotation_file)
        self.transforms = transforms
        self.with_targets = with_targets
        data = load_coco_instances(self.annotation_file)
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.categories = sorted(
            ({"id": c["id"], "name": c["name"]} for c in data["categories"]), key=lambda c: c["id"]
        )
        self.category_ids = [c["id"] for c in self.categories]
        self.label_of_category = {category_id: label for label, category_id in enumerate(self.category_ids, 1)}
        self.image_ids = [image["id"] for image in data["images"]]
        if skip_empty:
            self.image_ids = [i for i in self.image_ids if any(not a["iscrowd"] for a in self.coco.imgToAnns[i])]
        self._check_image_files()

    @property
    def num_classes(self):
        """Categories plus background, the detector's `num_classes`."""
        return len(self.categories) + 1

    def _check_image_files(self):
        for index, image_id in enumerate(self.image_ids):
            path = self.image_path(image_id)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{self.annotation_file}: image {index} (id {image_id}): file {path} does not exist"
                )

    def image_path(self, image_id):
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def __len__(self):
        return len(self.image_ids)

    def load_image(self, image_id):
        path = self.image_path(image_id)
        try:
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
        except OSError as error:
            raise OSError(f"{path}: cannot read image {image_id} of {self.annotation_file}: {error}") from error
        info = self.coco.imgs[image_id]
        if rgb.shape[:2] != (info["height"], info["width"]):
            raise ValueError(
                f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} (width x height), but {self.annotation_file} "
                f"says {info['width']}x{info['height']} for image id {image_id}"
            )
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255)

    def load_target(self, image_id):
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        boxes, labels, masks = [], [], []
        for annotation in self.coco.imgToAnns[image_id]:
            if annotation["iscrowd"]:
                continue
            x, y, w, h = annotation["bbox"]
            x1, y1 = max(x, 0.0), max(y, 0.0)
            x2, y2 = min(x + w, float(width)), min(y + h, float(height))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.label_of_category[annotation["category_id"]])
            masks.append(mask_utils.decode(segmentation_rle(annotation["segmentation"], height, width)))
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8),
            "image_id": image_id,
        }

    def __getitem__(self, key):
        """`key` is an index, or `(index, seed)`: the seed drives the random transforms, so a
        sample's augmentation does not depend on which worker loads it or when."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image_id = self.image_ids[index]
        image = self.load_image(image_id)
        target = self.load_target(image_id) if self.with_targets else {"image_id": image_id}
        if self.transforms is not None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            image, target = self.transforms(image, target, generator=generator)
        return image, target
