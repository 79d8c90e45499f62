"""Ground-truth MaskIoU of predicted masks, and the correlation of scores with it.

A detection's ground-truth MaskIoU is the IoU of its binary mask with the best-matching
non-crowd ground-truth instance of the same category in its image (0 when there is none),
both at image resolution. It needs no model internals: only the predicted masks.
"""

import math

import numpy as np
from pycocotools import mask as mask_utils

from msrcnn_fast.data.coco_format import segmentation_rle


def match_ground_truth(detections, coco_gt):
    """For an ImageDetections against the COCO ground truth `coco_gt`: ([K] float, the
    ground-truth MaskIoU: best IoU with an instance of the detection's category; [K] int64, the
    category of the instance of any category that overlaps the detection's mask most, 0 where
    none does). A detection whose best match has its category is "class-correct"."""
    gt_maskiou = np.zeros(len(detections), dtype=np.float32)
    best_category = np.zeros(len(detections), dtype=np.int64)
    info = coco_gt.imgs[detections.image_id]
    annotations = [a for a in coco_gt.imgToAnns[detections.image_id] if not a["iscrowd"]]
    if not len(detections) or not annotations:
        return gt_maskiou, best_category
    rles = [segmentation_rle(a["segmentation"], info["height"], info["width"]) for a in annotations]
    categories = np.array([a["category_id"] for a in annotations], dtype=np.int64)
    ious = np.asarray(mask_utils.iou(list(detections.rles), rles, [0] * len(rles))).reshape(len(detections), len(rles))
    same = categories[None, :] == detections.category_ids[:, None]
    gt_maskiou[:] = np.where(same, ious, 0.0).max(axis=1)
    best = ious.argmax(axis=1)
    best_category[:] = np.where(ious.max(axis=1) > 0, categories[best], 0)
    return gt_maskiou, best_category


def ground_truth_maskiou(detections, coco_gt):
    """[K] float array for an ImageDetections against the COCO ground truth `coco_gt`."""
    return match_ground_truth(detections, coco_gt)[0]


def pearson(x, y):
    """Pearson correlation coefficient; NaN when either side is constant or has < 2 values."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else math.nan
