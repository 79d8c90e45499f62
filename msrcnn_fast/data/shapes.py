"""The built-in dataset: generated images of shapes in COCO format (PNG + JSON).

    python -m msrcnn_fast.data.shapes --out DIR --train N --val M --seed S

writes DIR/{train,val}/NNNNNN.png and DIR/annotations/instances_{train,val}.json. Six shape
categories of varied size, colour and fill, on textured backgrounds with clutter; instances
overlap, occlude one another (each keeps at least 60 % of itself) and reach past the image's
border (by at most half their radius), edges are blurred and noise is added, so that predicted
masks vary in quality and mask scoring has something to correct, while each instance's class
stays recognisable. Fully visible instances are stored as polygons, occluded ones (and rings,
which have a hole) as RLE; a few images hold a crowd region (a cluster of dots, iscrowd=1) and a
few hold no instance at all.

Each image is a function of (seed, split, index) alone: the same seed gives the same files,
and asking for more images does not change the first ones.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_utils

CATEGORIES = ["circle", "rectangle", "triangle", "star", "ring", "cross"]
SPLIT_CODES = {"train": 1, "val": 2}
MIN_VISIBLE_PIXELS = 25
# The annotation files' info.version: raised whenever the same seed starts giving other images, so
# that a dataset written by an earlier version is recognised (the demo then writes it again).
VERSION = "2"
DESCRIPTION = "msrcnn_fast shapes"
# Placement, so that an instance's class stays recognisable while its mask is hard to get right:
# sizes (circumradius) as fractions of the image's short side; a centre at least BORDER_REACH
# circumradii inside the image, so the border cuts at most the outer half of a shape; a new shape
# may hide at most 1 - MIN_VISIBLE_FRACTION of any earlier instance (else another place is tried).
MIN_SIZE, MAX_SIZE = 0.07, 0.3
BORDER_REACH = 0.5
MIN_VISIBLE_FRACTION = 0.6
PLACEMENT_TRIES = 10


def _random_colour(rng):
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _background(rng, height, width):
    """A textured background: gradient, stripes, checkerboard or smooth noise, in 2 colours."""
    colour_a, colour_b = _random_colour(rng), _random_colour(rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        t = xs * math.cos(angle) + ys * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    elif kind == 1:  # stripes
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 40)
        t = (np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period) > 0).astype(np.float32)
    elif kind == 2:  # checkerboard
        cell = rng.integers(8, 48)
        t = ((xs // cell + ys // cell) % 2).astype(np.float32)
    else:  # smooth noise: a coarse random grid upsampled
        coarse = rng.uniform(0, 1, size=(rng.integers(3, 9), rng.integers(3, 9))).astype(np.float32)
        t = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
        t = np.clip(t, 0, 1)
    return colour_a * (1 - t[..., None]) + colour_b * t[..., None]


def _draw_clutter(rng, canvas):
    """Unlabelled lines and blobs: background clutter the detector must learn to ignore."""
    height, width = canvas.shape[:2]
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(0, 6)):
        points = [tuple(p) for p in rng.uniform(0, [width, height], size=(rng.integers(2, 5), 2))]
        draw.line(points, fill=255, width=int(rng.integers(1, 4)))
    mask = np.asarray(image) > 0
    canvas[mask] = _random_colour(rng)


def _polygon_vertices(category, cx, cy, size, angle, rng):
    """Outer polygon (list of (x, y)) of a shape; None for shapes drawn as ellipses."""

    def rotate(points):
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if category == "rectangle":
        aspect = rng.uniform(0.4, 1.0)
        w, h = size, size * aspect
        return rotate([(-w, -h), (w, -h), (w, h), (-w, h)])
    if category == "triangle":
        return rotate(
            [(size * math.cos(a), size * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 4)[:3] - math.pi / 2]
        )
    if category == "star":
        points = rng.integers(5, 8)
        inner = rng.uniform(0.35, 0.55)
        return rotate(
            [
                (size * r * math.cos(k * math.pi / points), size * r * math.sin(k * math.pi / points))
                for k, r in zip(range(2 * points), [1.0, inner] * points)
            ]
        )
    if category == "cross":
        arm = size * rng.uniform(0.25, 0.4)
        return rotate(
            [
                (-arm, -size), (arm, -size), (arm, -arm), (size, -arm), (size, arm), (arm, arm),
                (arm, size), (-arm, size), (-arm, arm), (-size, arm), (-size, -arm), (-arm, -arm),
            ]
        )  # fmt: skip
    if category == "circle":  # drawn as a fine polygon, so polygon annotations stay exact
        return [(cx + size * math.cos(a), cy + size * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 48)[:-1]]
    return None


def _shape_mask(category, cx, cy, size, angle, rng, height, width):
    """(bool mask [H, W], polygon or None)."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    polygon = _polygon_vertices(category, cx, cy, size, angle, rng)
    if polygon is not None:
        draw.polygon(polygon, fill=255)
    else:  # ring: an annulus, so its mask has a hole
        hole = size * rng.uniform(0.4, 0.7)
        draw.ellipse([cx - size, cy - size, cx + size, cy + size], fill=255)
        draw.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=0)
    return np.asarray(image) > 0, polygon


def _fill(rng, height, width, cx, cy, size):
    """The shape's appearance: a shaded colour, sometimes striped, sometimes low contrast."""
    colour = _random_colour(rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    shade = ((xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)) / max(size, 1.0)
    fill = colour * (1 + 0.25 * np.clip(shade, -1, 1))[..., None]
    if rng.uniform() < 0.3:
        period = rng.uniform(3, 10)
        stripes = np.sin((xs * math.sin(angle) - ys * math.cos(angle)) * 2 * math.pi / period) > 0
        fill[stripes] = _random_colour(rng)
    return fill


def _record(annotation_id, image_id, category_id, rle, segmentation, iscrowd):
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
        "area": float(mask_utils.area(rle)),
        "iscrowd": iscrowd,
        "segmentation": segmentation,
    }


def _place_shapes(rng, height, width):
    """Yields 0-7 shapes in drawing order: (category, whole mask in the image, polygon or None,
    (centre x, centre y, circumradius)). Each centre lies BORDER_REACH circumradii inside the
    image; each shape leaves every earlier one at least MIN_VISIBLE_FRACTION of its whole mask
    (PLACEMENT_TRIES places are tried, then the shape is left out)."""
    count = 0 if rng.uniform() < 0.05 else int(rng.integers(1, 8))
    short_side = min(height, width)
    wholes, visible = [], []  # each placed shape's whole mask, and what of it still shows
    for _ in range(count):
        category = CATEGORIES[rng.integers(len(CATEGORIES))]
        size = float(np.exp(rng.uniform(math.log(MIN_SIZE * short_side), math.log(MAX_SIZE * short_side))))
        for _ in range(PLACEMENT_TRIES):
            cx = rng.uniform(BORDER_REACH * size, width - BORDER_REACH * size)
            cy = rng.uniform(BORDER_REACH * size, height - BORDER_REACH * size)
            mask, polygon = _shape_mask(category, cx, cy, size, rng.uniform(0, 2 * math.pi), rng, height, width)
            left = [shown & ~mask for shown in visible]
            if all(shown.sum() >= MIN_VISIBLE_FRACTION * whole.sum() for shown, whole in zip(left, wholes)):
                break
        else:
            continue
        wholes.append(mask)
        visible = [*left, mask]
        yield category, mask, polygon, (cx, cy, size)


def generate_image(seed, split, index, *, min_size=224, max_size=320):
    """(RGB uint8 array [H, W, 3], list of (category name, visible mask, polygon or None, iscrowd))."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    canvas = _background(rng, height, width)
    _draw_clutter(rng, canvas)

    drawn = []  # (category, mask, polygon, iscrowd), in drawing order: later ones occlude
    if rng.uniform() < 0.12:  # a crowd: many small dots of one category, one region
        crowd = np.zeros((height, width), dtype=bool)
        cx, cy, spread = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height, rng.uniform(15, 40)
        for _ in range(rng.integers(10, 25)):
            x, y = rng.normal(cx, spread), rng.normal(cy, spread)
            mask, _ = _shape_mask("circle", x, y, rng.uniform(2, 4), 0.0, rng, height, width)
            crowd |= mask
        canvas[crowd] = _random_colour(rng)
        drawn.append(("circle", crowd, None, 1))

    for category, mask, polygon, (cx, cy, size) in _place_shapes(rng, height, width):
        fill = _fill(rng, height, width, cx, cy, size)
        canvas[mask] = fill[mask]
        drawn.append((category, mask, polygon, 0))

    # What each instance shows: its mask minus everything drawn after it.
    instances = []
    covered = np.zeros((height, width), dtype=bool)
    for category, mask, polygon, iscrowd in reversed(drawn):
        visible = mask & ~covered
        covered |= mask
        if visible.sum() >= MIN_VISIBLE_PIXELS:
            instances.append((category, visible, polygon if (visible == mask).all() else None, iscrowd))
    instances.reverse()

    image = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.2))))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(2, 10), size=(height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8), instances


def write_split(out_dir, split, count, seed, *, min_size=224, max_size=320):
    """Writes `count` images of `split` and their annotation file; returns the file's path."""
    image_dir = os.path.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    category_id = {name: k for k, name in enumerate(CATEGORIES, 1)}
    images, annotations = [], []
    for index in range(count):
        pixels, instances = generate_image(seed, split, index, min_size=min_size, max_size=max_size)
        height, width = pixels.shape[:2]
        file_name = f"{index:06d}.png"
        Image.fromarray(pixels).save(os.path.join(image_dir, file_name))
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for category, mask, polygon, iscrowd in instances:
            if polygon is not None:
                segmentation = [[round(float(c), 2) for point in polygon for c in point]]
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            else:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                segmentation = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
            annotations.append(
                _record(len(annotations) + 1, image_id, category_id[category], rle, segmentation, iscrowd)
            )
    data = {
        "info": {"description": f"{DESCRIPTION}, split {split}, seed {seed}", "version": VERSION},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": category_id[name], "name": name, "supercategory": "shape"} for name in CATEGORIES],
    }
    path = os.path.join(out_dir, "annotations", f"instances_{split}.json")
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file)
    os.replace(temporary, path)  # the annotation file appears last: its presence means "complete"
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m msrcnn_fast.data.shapes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, required=True, help="number of training images")
    parser.add_argument("--val", type=int, required=True, help="number of validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-size", type=int, default=224, help="smallest image side (pixels)")
    parser.add_argument("--max-size", type=int, default=320, help="largest image side (pixels)")
    args = parser.parse_args(argv)
    for name in ("train", "val"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if not 16 <= args.min_size <= args.max_size:
        parser.error(f"need 16 <= --min-size <= --max-size, got {args.min_size} and {args.max_size}")
    for split in ("train", "val"):
        path = write_split(
            args.out, split, getattr(args, split), args.seed, min_size=args.min_size, max_size=args.max_size
        )
        print(f"wrote {getattr(args, split)} images and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
