"""COCO-format instance segmentation dataset (polygon and RLE masks)."""

import contextlib
import io
import os
import warnings

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from msrcnn_fast.data.coco_format import CocoFormatError, load_coco_instances, segmentation_rle
from msrcnn_fast.data.images import ImageFileError, read_rgb

# Unusable annotations listed by name in the dataset's warning; the rest are counted.
LISTED_PROBLEMS = 10


def polygon_area(polygon):
    """Absolute shoelace area of a flat [x0, y0, x1, y1, ...] polygon."""
    xs, ys = polygon[0::2], polygon[1::2]
    return abs(sum(xs[i - 1] * ys[i] - xs[i] * ys[i - 1] for i in range(len(xs)))) / 2


def annotation_problem(annotation, height, width):
    """Why a non-crowd annotation cannot be a training target, or None when it can.

    The box must be at least one pixel wide and tall inside the image (torchvision's detectors
    refuse degenerate boxes, and the box coder takes their logarithm), and the mask must cover
    a pixel. Polygons are rasterised only when their area is under a pixel, so this stays cheap
    on large datasets; a mask that still decodes empty is caught when the item is loaded."""
    x, y, w, h = annotation["bbox"]
    if w == 0 or h == 0:
        return f"bbox {annotation['bbox']} has zero {'width' if w == 0 else 'height'}"
    if min(x + w, width) - max(x, 0) < 1 or min(y + h, height) - max(y, 0) < 1:
        return f"bbox {annotation['bbox']} covers less than one pixel row or column of the {width}x{height} image"
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list) and sum(polygon_area(p) for p in segmentation) >= 1:
        return None
    if mask_utils.area(segmentation_rle(segmentation, height, width)) == 0:
        kind = (
            "polygon encloses no area (its points coincide or are collinear)"
            if isinstance(segmentation, list)
            else "RLE mask is all zeros"
        )
        return f"its {kind}"
    return None


class CocoInstances(torch.utils.data.Dataset):
    """Images and instance targets from a COCO-format annotation file.

    Item `index` is `(image, target)`: image a float tensor [3, H, W] in 0-1 at the file's size
    (then `transforms`), target a dict with `boxes` float [N, 4] (x1, y1, x2, y2, pixels),
    `labels` int64 [N] (1..num_categories, 0 is background), `masks` uint8 [N, H, W] and
    `image_id` (int). Crowd regions are left out of the targets (the detector has no ignore
    regions). So are unusable annotations, with one warning that names them (image, file,
    annotation and why): a box under one pixel wide or tall inside the image (a zero-width or
    zero-height bbox included), or a mask that covers no pixel (a polygon whose points coincide
    or are collinear, an all-zero RLE), as detectron2 filters them. Images of any PIL mode
    load as RGB (see data/images.py).

    Labels are contiguous: the categories sorted by id get 1, 2, ...; `category_ids[label - 1]`
    maps back. `skip_empty` drops images with no usable instance (CocoFormatError if that
    leaves none); `with_targets=False` yields `(image, {"image_id": ...})` only, for inference
    (the annotations are then not checked: evaluation reads the file as it is, as COCOeval does).
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
        # Per image, the annotations that can be training targets (filled when they are needed).
        self.usable_annotations = None
        if with_targets or skip_empty:
            self.usable_annotations = self._usable_annotations(warn=with_targets)
        if skip_empty:
            self.image_ids = [i for i in self.image_ids if self.usable_annotations[i]]
            if not self.image_ids:
                raise CocoFormatError(
                    f"{self.annotation_file}: no image has a usable annotation, so skip_empty leaves no image "
                    f"({len(data['images'])} images, {len(data['annotations'])} annotations)"
                )
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

    def _usable_annotations(self, *, warn):
        """{image id: its non-crowd annotations that can be targets}; warns about the others."""
        usable, problems = {}, []
        for image_id in self.image_ids:
            info = self.coco.imgs[image_id]
            usable[image_id] = []
            for annotation in self.coco.imgToAnns[image_id]:
                if annotation["iscrowd"]:
                    continue
                problem = annotation_problem(annotation, info["height"], info["width"])
                if problem is None:
                    usable[image_id].append(annotation)
                else:
                    problems.append(self._describe(image_id, annotation, problem))
        if warn and problems:
            listed = "; ".join(problems[:LISTED_PROBLEMS])
            more = f"; and {len(problems) - LISTED_PROBLEMS} more" if len(problems) > LISTED_PROBLEMS else ""
            warnings.warn(
                f"{self.annotation_file}: {len(problems)} annotation(s) cannot be training targets and are left "
                f"out: {listed}{more}",
                stacklevel=3,
            )
        return usable

    def _describe(self, image_id, annotation, problem):
        return f"image {image_id} ({self.coco.imgs[image_id]['file_name']}) annotation {annotation['id']}: {problem}"

    def image_path(self, image_id):
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def __len__(self):
        return len(self.image_ids)

    def load_image(self, image_id):
        path = self.image_path(image_id)
        try:
            image = read_rgb(path)
        except ImageFileError as error:
            raise ImageFileError(f"{error} (image id {image_id} of {self.annotation_file})") from error
        info = self.coco.imgs[image_id]
        if tuple(image.shape[1:]) != (info["height"], info["width"]):
            raise ImageFileError(
                f"{path}: image is {image.shape[2]}x{image.shape[1]} (width x height), but {self.annotation_file} "
                f"says {info['width']}x{info['height']} for image id {image_id}"
            )
        return image

    def load_target(self, image_id):
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        boxes, labels, masks = [], [], []
        for annotation in self.usable_annotations[image_id]:
            mask = mask_utils.decode(segmentation_rle(annotation["segmentation"], height, width))
            if not mask.any():  # a polygon too thin to cover a pixel
                problem = "its polygon covers no pixel"
                warnings.warn(
                    f"{self.annotation_file}: left out {self._describe(image_id, annotation, problem)}", stacklevel=3
                )
                continue
            x, y, w, h = annotation["bbox"]
            boxes.append([max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))])
            labels.append(self.label_of_category[annotation["category_id"]])
            masks.append(mask)
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
