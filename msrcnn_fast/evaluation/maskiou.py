"""Ground-truth MaskIoU of predicted masks, and the correlation of scores with it.

A detection's ground-truth MaskIoU is the IoU of its binary mask with the best-matching
non-crowd ground-truth instance of the same category in its image (0 when there is none),
both at image resolution. It needs no model internals: only the predicted masks.
"""

import math

import numpy as np
from pycocotools import mask as mask_utils

from msrcnn_fast.data.coco_format import segmentation_rle


def ground_truth_maskiou(detections, coco_gt):
    """[K] float array for an ImageDetections against the COCO ground truth `coco_gt`."""
    result = np.zeros(len(detections), dtype=np.float32)
    if not len(detections):
        return result
    info = coco_gt.imgs[detections.image_id]
    by_category = {}
    for annotation in coco_gt.imgToAnns[detections.image_id]:
        if not annotation["iscrowd"]:
            rle = segmentation_rle(annotation["segmentation"], info["height"], info["width"])
            by_category.setdefault(annotation["category_id"], []).append(rle)
    for category_id, gt_rles in by_category.items():
        index = np.flatnonzero(detections.category_ids == category_id)
        if len(index):
            ious = mask_utils.iou([detections.rles[i] for i in index], gt_rles, [0] * len(gt_rles))
            result[index] = np.asarray(ious).reshape(len(index), len(gt_rles)).max(axis=1)
    return result


def pearson(x, y):
    """Pearson correlation coefficient; NaN when either side is constant or has < 2 values."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else math.nan
