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


# ---- a hostile dataset: every kind of image and annotation a user's data may hold --------

HOSTILE_SIZE = 64
HUGE_WIDTH, HUGE_HEIGHT = 4000, 3000


def _pixels(height, width, rng):
    return (rng.random((height, width, 3)) * 60).astype(np.uint8)


def _painted(pixels, box, colour):
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = colour
    return pixels


def _save_as(pixels, mode, path):
    """Saves RGB `pixels` as a PNG of PIL mode `mode` (RGB, L, RGBA, P or I;16)."""
    rgb = Image.fromarray(pixels)
    if mode == "RGB":
        image = rgb
    elif mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putalpha(128)
    elif mode == "P":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode == "L":
        image = rgb.convert("L")
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    else:
        raise ValueError(f"mode: expected RGB, RGBA, P, L or I;16, got {mode!r}")
    image.save(path)
    with Image.open(path) as saved:
        assert saved.mode == mode, f"{path}: PIL saved mode {mode} as {saved.mode}"


def write_hostile_coco(folder):
    """A COCO-format split in `folder` (images beside `annotations.json`) of the inputs that a
    real dataset holds and a detector must survive. Image ids and what each holds:

      1 good.png        64x64 RGB, a polygon rectangle (category 1) and an RLE one (2)
      2 empty.png       64x64 RGB, no annotation at all
      3 degenerate.png  64x64 RGB, one usable rectangle (1), and unusable ones: a polygon whose
                        points are all equal (bbox 0x0), a collinear polygon (with a 30x4 bbox),
                        a usable polygon whose bbox has width 0, one whose bbox has height 0,
                        and an all-zero RLE with a plausible bbox
      4 only_degenerate.png  64x64 RGB, only unusable annotations (all points equal, all-zero RLE)
      5 one_pixel.png   1x1 RGB, one annotation covering its one pixel
      6 huge.png        4000x3000 RGB, one large rectangle
      7 gray.png        64x64 mode L, a rectangle
      8 rgba.png        64x64 mode RGBA (alpha 128), a rectangle
      9 palette.png     64x64 mode P, a rectangle
     10 gray16.png      64x64 mode I;16 (16-bit PNG), a rectangle
     11 strip.png       1 pixel tall, 200 wide (its short side rounds to 0 at the model's scale),
                        a 50x1 rectangle

    Returns (annotation file path, {"usable": {image id: usable annotation ids},
    "unusable": {annotation id: image id}})."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    s = HOSTILE_SIZE
    images, annotations = [], []
    usable, unusable = {}, {}

    def add_image(image_id, name, pixels, mode="RGB"):
        _save_as(pixels, mode, os.path.join(folder, name))
        images.append({"id": image_id, "file_name": name, "height": pixels.shape[0], "width": pixels.shape[1]})
        usable.setdefault(image_id, [])

    def add(image_id, category_id, bbox, segmentation, *, ok, area=None):
        annotation_id = len(annotations) + 1
        annotations.append(
            {
                "id": annotation_id,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": bbox,
                "area": float(bbox[2] * bbox[3]) if area is None else area,
                "iscrowd": 0,
                "segmentation": segmentation,
            }
        )
        if ok:
            usable[image_id].append(annotation_id)
        else:
            unusable[annotation_id] = image_id

    def rectangle(image_id, category_id, box, height=s, width=s, rle=False):
        x1, y1, x2, y2 = box
        mask = rectangle_mask(x1, y1, x2, y2, height, width)
        segmentation = compressed_rle(mask) if rle else [[x1, y1, x2, y1, x2, y2, x1, y2]]
        add(image_id, category_id, [x1, y1, x2 - x1, y2 - y1], segmentation, ok=True)

    red, cyan = (200, 60, 60), (60, 200, 200)
    pixels = _painted(_painted(_pixels(s, s, rng), (4, 6, 30, 28), red), (34, 30, 60, 60), cyan)
    add_image(1, "good.png", pixels)
    rectangle(1, 1, (4, 6, 30, 28))
    rectangle(1, 2, (34, 30, 60, 60), rle=True)

    add_image(2, "empty.png", _pixels(s, s, rng))

    add_image(3, "degenerate.png", _painted(_pixels(s, s, rng), (8, 8, 40, 36), red))
    rectangle(3, 1, (8, 8, 40, 36))
    zeros = compressed_rle(np.zeros((s, s), np.uint8))
    add(3, 2, [10, 10, 0, 0], [[10, 10, 10, 10, 10, 10]], ok=False)  # all points equal
    add(3, 2, [5, 48, 30, 4], [[5, 50, 20, 50, 35, 50]], ok=False)  # collinear, a padded bbox
    add(3, 2, [44, 4, 0, 20], [[44, 4, 60, 4, 60, 24, 44, 24]], ok=False, area=320.0)  # bbox width 0
    add(3, 2, [44, 40, 16, 0], [[44, 40, 60, 40, 60, 60, 44, 60]], ok=False, area=320.0)  # bbox height 0
    add(3, 2, [20, 40, 12, 12], zeros, ok=False)  # all-zero RLE, plausible bbox

    add_image(4, "only_degenerate.png", _pixels(s, s, rng))
    add(4, 1, [30, 30, 0, 0], [[30, 30, 30, 30, 30, 30]], ok=False)
    add(4, 2, [0, 0, 10, 10], zeros, ok=False, area=0.0)

    add_image(5, "one_pixel.png", np.full((1, 1, 3), 200, np.uint8))
    add(5, 1, [0, 0, 1, 1], [[0, 0, 1, 0, 1, 1, 0, 1]], ok=True)

    huge = np.full((HUGE_HEIGHT, HUGE_WIDTH, 3), 30, np.uint8)
    add_image(6, "huge.png", _painted(huge, (1000, 800, 3000, 2400), cyan))
    rectangle(6, 2, (1000, 800, 3000, 2400), HUGE_HEIGHT, HUGE_WIDTH, rle=True)

    for image_id, (name, mode) in enumerate(
        [("gray.png", "L"), ("rgba.png", "RGBA"), ("palette.png", "P"), ("gray16.png", "I;16")], start=7
    ):
        box = (10 + image_id, 12, 50, 40 + image_id)
        add_image(image_id, name, _painted(_pixels(s, s, rng), box, red), mode)
        rectangle(image_id, 1, box)

    add_image(11, "strip.png", _painted(_pixels(1, 200, rng), (10, 0, 60, 1), red))
    rectangle(11, 1, (10, 0, 60, 1), 1, 200)

    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "cyan"}],
    }
    path = os.path.join(folder, "annotations.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file)
    return path, {"usable": usable, "unusable": unusable}
