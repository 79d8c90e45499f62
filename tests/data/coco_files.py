"""Small hand-made COCO-format datasets written to a folder, for the data and evaluation tests."""

import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

HEIGHT, WIDTH = 40, 48


def rectangle_mask(x1, y1, x2, y2, height=HEIGHT, width=WIDTH):
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(mask):
    """Column-major run lengths starting with a run of zeros, as COCO's iscrowd annotations."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def annotation(annotation_id, image_id, category_id, mask, segmentation, iscrowd=0):
    ys, xs = np.nonzero(mask)
    x1, y1 = int(xs.min()), int(ys.min())
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, int(xs.max()) + 1 - x1, int(ys.max()) + 1 - y1],
        "area": int(mask.sum()),
        "iscrowd": iscrowd,
        "segmentation": segmentation,
    }


def tiny_coco():
    """Three images: image 1 holds a polygon square (category 3) and a compressed-RLE rectangle
    (category 7); image 2 an uncompressed-RLE rectangle (category 3) and a crowd region; image 3
    nothing. Returns (data dict, {annotation id: mask})."""
    masks = {
        1: rectangle_mask(4, 6, 20, 22),
        2: rectangle_mask(24, 10, 44, 30),
        3: rectangle_mask(10, 5, 30, 15),
        4: rectangle_mask(2, 25, 12, 38),
    }
    annotations = [
        annotation(1, 1, 3, masks[1], [[4, 6, 20, 6, 20, 22, 4, 22]]),
        annotation(2, 1, 7, masks[2], compressed_rle(masks[2])),
        annotation(3, 2, 3, masks[3], uncompressed_rle(masks[3])),
        annotation(4, 2, 7, masks[4], uncompressed_rle(masks[4]), iscrowd=1),
    ]
    data = {
        "images": [{"id": i, "file_name": f"img{i}.png", "height": HEIGHT, "width": WIDTH} for i in (1, 2, 3)],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "square"}, {"id": 7, "name": "rectangle"}, {"id": 9, "name": "unused"}],
    }
    return data, masks


def write_coco(folder, data, image_ids=None):
    """Writes data as folder/annotations.json and a random PNG per image; returns the json path."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for image in data["images"]:
        if image_ids is None or image["id"] in image_ids:
            pixels = rng.integers(0, 256, size=(image["height"], image["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, image["file_name"]))
    path = os.path.join(folder, "annotations.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file)
    return path
