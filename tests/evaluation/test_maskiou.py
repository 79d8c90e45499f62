import contextlib
import io
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from msrcnn_fast.evaluation import detections_from_output, ground_truth_maskiou, pearson
from tests.data.coco_files import rectangle_mask, tiny_coco


def coco():
    data, _ = tiny_coco()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
    return gt


def outputs(labels, masks, scores=None, mask_scores=None, **extra):
    count = len(labels)
    scores = torch.tensor(scores if scores is not None else [0.9] * count)
    return {
        "boxes": torch.zeros(count, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": scores,
        "mask_scores": torch.tensor(mask_scores) if mask_scores is not None else scores * 0.5,
        "masks": torch.stack([torch.from_numpy(m) for m in masks])[:, None].bool(),
        **extra,
    }


def test_ground_truth_maskiou_is_the_best_same_class_match():
    exact = rectangle_mask(4, 6, 20, 22)  # image 1's square, category 3 (label 1)
    half = rectangle_mask(4, 6, 12, 22)
    detections = detections_from_output(1, outputs([1, 1, 2], [exact, half, exact]), [3, 7, 9])
    iou = ground_truth_maskiou(detections, coco())
    # the third has the square's mask but class 7: its best class-7 match is the rectangle (no overlap)
    assert iou.tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_crowd_regions_and_other_classes_do_not_count():
    crowd = rectangle_mask(2, 25, 12, 38)  # image 2's crowd region, category 7
    detections = detections_from_output(2, outputs([2, 3], [crowd, crowd]), [3, 7, 9])
    assert ground_truth_maskiou(detections, coco()).tolist() == [0.0, 0.0]


def empty():
    return {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "scores": torch.zeros(0),
        "mask_scores": torch.zeros(0),
        "masks": torch.zeros(0, 1, 40, 48),
    }


def test_no_detections():
    detections = detections_from_output(3, empty(), [3, 7, 9])
    assert len(detections) == 0 and ground_truth_maskiou(detections, coco()).shape == (0,)


def test_float_masks_are_thresholded_at_one_half():
    probabilities = torch.zeros(1, 1, 40, 48)
    probabilities[0, 0, :10, :10] = 0.5
    probabilities[0, 0, 10:20, :10] = 0.49
    single = {**outputs([1], [np.zeros((40, 48), np.uint8)]), "masks": probabilities}
    assert mask_utils.area(detections_from_output(1, single, [3, 7, 9]).rles[0]) == 100


def test_predicted_maskiou_is_taken_from_the_output_or_derived_from_the_scores():
    masks = [rectangle_mask(0, 0, 5, 5)] * 2
    derived = detections_from_output(1, outputs([1, 1], masks, scores=[0.8, 0.5], mask_scores=[0.4, 0.5]), [3, 7, 9])
    assert derived.predicted_maskiou.tolist() == pytest.approx([0.5, 1.0])
    given = detections_from_output(1, outputs([1, 1], masks, maskiou=torch.tensor([0.3, 0.6])), [3, 7, 9])
    assert given.predicted_maskiou.tolist() == pytest.approx([0.3, 0.6])


def test_detections_are_sorted_by_score_and_cut_at_max_detections():
    masks = [rectangle_mask(0, 0, k + 1, k + 1) for k in range(3)]
    detections = detections_from_output(1, outputs([1, 2, 3], masks, scores=[0.2, 0.9, 0.5]), [3, 7, 9], 2)
    assert detections.scores.tolist() == pytest.approx([0.9, 0.5])
    assert detections.category_ids.tolist() == [7, 9]


def test_labels_outside_the_categories_are_an_error():
    with pytest.raises(ValueError, match=r"image 1: predicted labels \[4\] are outside 1..3"):
        detections_from_output(1, outputs([4], [rectangle_mask(0, 0, 2, 2)]), [3, 7, 9])


def test_pearson_matches_numpy_and_is_nan_when_undefined():
    rng = np.random.default_rng(0)
    x, y = rng.random(50), rng.random(50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert math.isnan(pearson([1.0, 1.0, 1.0], [0.1, 0.5, 0.9]))
    assert math.isnan(pearson([0.3], [0.2]))
