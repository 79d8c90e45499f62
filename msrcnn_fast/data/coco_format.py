"""Reading and checking a COCO-format instance annotation file.

Every problem is reported as a CocoFormatError that names the file and the entry (its
position in the list and its id), so a user can find it in a file of a million annotations.
"""

import json
import math
import os

from pycocotools import mask as mask_utils


class CocoFormatError(ValueError):
    """An annotation file that is not valid COCO instance-segmentation format."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_list_of_dicts(data, key, path):
    if key not in data:
        raise CocoFormatError(f"{path}: missing the top-level key {key!r}")
    entries = data[key]
    if not isinstance(entries, list):
        raise CocoFormatError(f"{path}: {key!r} must be a list, got {type(entries).__name__}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CocoFormatError(f"{path}: {key} entry {index} must be an object, got {type(entry).__name__}")
    return entries


def _entry_name(kind, index, entry):
    return f"{kind} {index} (id {entry['id']})" if "id" in entry else f"{kind} {index}"


def _check_fields(entry, where, path, fields):
    for field, check, expected in fields:
        if field not in entry:
            raise CocoFormatError(f"{path}: {where}: missing {field!r}")
        if not check(entry[field]):
            raise CocoFormatError(f"{path}: {where}: {field} must be {expected}, got {entry[field]!r}")


def _check_segmentation(segmentation, image, where, path):
    height, width = image["height"], image["width"]
    if isinstance(segmentation, list):
        if not segmentation:
            raise CocoFormatError(f"{path}: {where}: segmentation is an empty list of polygons")
        for k, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
                raise CocoFormatError(f"{path}: {where}: polygon {k} must be a list of numbers")
            if len(polygon) < 6 or len(polygon) % 2:
                raise CocoFormatError(
                    f"{path}: {where}: polygon {k} needs an even number (>= 6) of coordinates, got {len(polygon)}"
                )
        return
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise CocoFormatError(f"{path}: {where}: an RLE segmentation needs 'counts' and 'size'")
        size = segmentation["size"]
        if list(size) != [height, width]:
            raise CocoFormatError(
                f"{path}: {where}: RLE size {size} differs from its image's [height, width] [{height}, {width}]"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != height * width:
                raise CocoFormatError(
                    f"{path}: {where}: uncompressed RLE counts must be non-negative integers summing to "
                    f"height * width = {height * width}"
                )
        elif not isinstance(counts, str):
            raise CocoFormatError(f"{path}: {where}: RLE counts must be a string or a list of integers")
        return
    raise CocoFormatError(
        f"{path}: {where}: segmentation must be a list of polygons or an RLE object, got {type(segmentation).__name__}"
    )


def load_coco_instances(path):
    """Reads `path` and checks it; returns the parsed dict (images, annotations, categories).

    Checked: valid JSON; the three lists; unique image and category ids; every annotation's
    image_id and category_id exist; bbox is 4 finite numbers with non-negative size;
    iscrowd is 0 or 1; segmentation is valid polygons or an RLE of its image's size.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: annotation file does not exist")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise CocoFormatError(f"{path}: not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise CocoFormatError(f"{path}: not UTF-8 text: {error}") from error
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: the top level must be an object, got {type(data).__name__}")

    categories = _check_list_of_dicts(data, "categories", path)
    category_ids = []
    for index, category in enumerate(categories):
        where = _entry_name("category", index, category)
        _check_fields(
            category, where, path, [("id", _is_int, "an integer"), ("name", lambda v: isinstance(v, str), "a string")]
        )
        category_ids.append(category["id"])
    if len(set(category_ids)) != len(category_ids):
        raise CocoFormatError(f"{path}: category ids are not unique: {sorted(category_ids)}")
    known_categories = set(category_ids)

    images = _check_list_of_dicts(data, "images", path)
    images_by_id = {}
    for index, image in enumerate(images):
        where = _entry_name("image", index, image)
        _check_fields(
            image,
            where,
            path,
            [
                ("id", _is_int, "an integer"),
                ("file_name", lambda v: isinstance(v, str) and v != "", "a non-empty string"),
                ("height", lambda v: _is_int(v) and v > 0, "a positive integer"),
                ("width", lambda v: _is_int(v) and v > 0, "a positive integer"),
            ],
        )
        if image["id"] in images_by_id:
            raise CocoFormatError(f"{path}: {where}: image id {image['id']} appears twice")
        images_by_id[image["id"]] = image

    annotations = _check_list_of_dicts(data, "annotations", path)
    for index, annotation in enumerate(annotations):
        where = _entry_name("annotation", index, annotation)
        _check_fields(
            annotation,
            where,
            path,
            [
                ("id", _is_int, "an integer"),
                ("image_id", _is_int, "an integer"),
                ("category_id", _is_int, "an integer"),
                ("bbox", lambda v: isinstance(v, list) and len(v) == 4 and all(map(_is_number, v)), "[x, y, w, h]"),
                ("segmentation", lambda v: True, ""),
            ],
        )
        if annotation["image_id"] not in images_by_id:
            raise CocoFormatError(f"{path}: {where}: image_id {annotation['image_id']} is not in images")
        if annotation["category_id"] not in known_categories:
            raise CocoFormatError(
                f"{path}: {where}: category_id {annotation['category_id']} "
                f"is not in categories {sorted(known_categories)}"
            )
        _, _, box_width, box_height = annotation["bbox"]
        if box_width < 0 or box_height < 0:
            raise CocoFormatError(f"{path}: {where}: bbox {annotation['bbox']} has a negative width or height")
        if annotation.get("iscrowd", 0) not in (0, 1):
            raise CocoFormatError(f"{path}: {where}: iscrowd must be 0 or 1, got {annotation['iscrowd']!r}")
        _check_segmentation(annotation["segmentation"], images_by_id[annotation["image_id"]], where, path)
        # pycocotools' COCOeval reads both keys without defaults.
        annotation.setdefault("iscrowd", 0)
        if "area" not in annotation:
            annotation["area"] = float(
                segmentation_area(annotation["segmentation"], images_by_id[annotation["image_id"]])
            )
    return data


def segmentation_rle(segmentation, height, width):
    """One compressed RLE (pycocotools format) for a polygon list or RLE segmentation."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    counts = segmentation["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(segmentation, height, width)
    # bytes: what pycocotools' COCOeval leaves in the ground truth it evaluated (it replaces
    # every annotation's segmentation by its RLE in place)
    return {"size": segmentation["size"], "counts": counts if isinstance(counts, bytes) else counts.encode("ascii")}


def segmentation_area(segmentation, image):
    return mask_utils.area(segmentation_rle(segmentation, image["height"], image["width"]))
