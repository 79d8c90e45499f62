"""The evaluator's AP figures are pycocotools' own, and the three segm rankings differ only in score."""

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from msrcnn_fast.evaluation import MaskScoringEvaluator
from msrcnn_fast.evaluation.coco_evaluator import STAT_NAMES
from tests.data.coco_files import HEIGHT, WIDTH, annotation, rectangle_mask, tiny_coco


def coco_of(data):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(data)
        coco.createIndex()
    return coco


def output(detections):
    """A model output dict from [(box, label, score, mask_score, mask)]."""
    if not detections:
        return {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "scores": torch.zeros(0),
            "mask_scores": torch.zeros(0),
            "masks": torch.zeros(0, 1, HEIGHT, WIDTH),
        }
    boxes, labels, scores, mask_scores, masks = zip(*detections)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels),
        "scores": torch.tensor(scores),
        "mask_scores": torch.tensor(mask_scores),
        "masks": torch.stack([torch.from_numpy(m).float()[None] * 0.9 for m in masks]),  # probabilities
    }


HAND_MADE = {
    1: [
        ([4, 6, 20, 22], 1, 0.9, 0.5, rectangle_mask(4, 6, 20, 22)),
        ([5, 6, 21, 22], 1, 0.8, 0.7, rectangle_mask(6, 6, 22, 20)),
        ([24, 10, 44, 30], 2, 0.6, 0.55, rectangle_mask(26, 12, 44, 30)),
        ([0, 0, 10, 10], 2, 0.3, 0.1, rectangle_mask(0, 0, 10, 10)),
    ],
    2: [
        ([10, 5, 30, 15], 1, 0.95, 0.2, rectangle_mask(10, 5, 25, 15)),
        ([2, 25, 12, 38], 2, 0.7, 0.65, rectangle_mask(2, 25, 12, 38)),  # on the crowd region
    ],
    3: [([1, 1, 9, 9], 1, 0.4, 0.3, rectangle_mask(1, 1, 9, 9))],
}


def pycocotools_stats(data, records, iou_type):
    """COCOeval straight from a result file, as a user would run it."""
    gt = coco_of(data)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(records)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.fixture
def evaluated():
    data, _ = tiny_coco()
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9])
    for image_id, detections in HAND_MADE.items():
        evaluator.add(image_id, output(detections))
    return data, evaluator, evaluator.evaluate()


def test_ap_equals_pycocotools_on_the_written_result_file(evaluated, tmp_path):
    data, evaluator, results = evaluated
    records = evaluator.coco_records()
    for name, iou_type in [("bbox", "bbox"), ("segm_mask_rcnn", "segm"), ("segm_ms_rcnn", "segm")]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(records[name]))
        expected = pycocotools_stats(data, str(path), iou_type)
        assert [results[name][s] for s in STAT_NAMES] == pytest.approx(expected.tolist(), abs=0)
    # the rankings must matter on this data, or the comparison above proves little
    assert results["segm_mask_rcnn"]["AP"] != results["segm_ms_rcnn"]["AP"]


def test_result_records_carry_category_ids_and_the_ranking_score(evaluated):
    _, evaluator, _ = evaluated
    records = evaluator.coco_records()
    assert [r["category_id"] for r in records["bbox"][:4]] == [3, 3, 7, 7]
    assert [r["score"] for r in records["segm_mask_rcnn"][:2]] == pytest.approx([0.9, 0.8])
    assert [r["score"] for r in records["segm_ms_rcnn"][:2]] == pytest.approx([0.5, 0.7])
    assert records["bbox"][0]["bbox"] == [4.0, 6.0, 16.0, 16.0]


def test_ranking_by_mask_quality_changes_ap_as_expected():
    """One object, two detections: a poor mask with the higher classification score and a
    perfect one. By classification score the poor one comes first: precision 1/2 at full recall
    (AP 0.5); by mask score or ground-truth MaskIoU the perfect one does (AP 1.0)."""
    truth = rectangle_mask(10, 10, 30, 30)
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": [annotation(1, 1, 5, truth, [[10, 10, 30, 10, 30, 30, 10, 30]])],
        "categories": [{"id": 5, "name": "thing"}],
    }
    poor, perfect = rectangle_mask(10, 10, 30, 14), truth
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[5])
    evaluator.add(1, output([([10, 10, 30, 30], 1, 0.9, 0.18, poor), ([10, 10, 30, 30], 1, 0.8, 0.72, perfect)]))
    results = evaluator.evaluate()
    assert results["segm_mask_rcnn"]["AP"] == pytest.approx(0.5)
    assert results["segm_ms_rcnn"]["AP"] == pytest.approx(1.0)
    assert results["segm_ms_rcnn_upper_bound"]["AP"] == pytest.approx(1.0)
    assert evaluator.arrays()["gt_maskiou"].tolist() == pytest.approx([0.2, 1.0])
    assert results["maskiou"]["pearson_predicted_vs_gt"] == pytest.approx(1.0)  # 0.2, 0.9 vs 0.2, 1.0


def test_no_detections_at_all_give_zero_ap_and_no_correlation():
    data, _ = tiny_coco()
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9])
    for image_id in (1, 2, 3):
        evaluator.add(image_id, output([]))
    results = evaluator.evaluate()
    assert results["segm_ms_rcnn"]["AP"] == 0.0 and results["bbox"]["AP"] == 0.0
    assert math.isnan(results["maskiou"]["pearson_predicted_vs_gt"]) and results["num_detections"] == 0


def test_only_the_added_images_are_evaluated():
    data, _ = tiny_coco()
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9])
    evaluator.add(1, output(HAND_MADE[1][:1]))  # a perfect detection of image 1's square
    results = evaluator.evaluate()
    assert results["num_images"] == 1
    assert results["segm_mask_rcnn"]["AP"] == pytest.approx(0.5)  # square found; rectangle (cat 7) missed


def test_an_unknown_image_is_refused():
    data, _ = tiny_coco()
    with pytest.raises(KeyError, match="image id 42 is not in the ground truth"):
        MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9]).add(42, output([]))


def test_top_detections_only():
    data, _ = tiny_coco()
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9], max_detections=2)
    evaluator.add(1, output(HAND_MADE[1]))
    assert evaluator.arrays()["score"].tolist() == pytest.approx([0.9, 0.8])
    assert np.all(np.diff(evaluator.arrays()["score"]) <= 0)


def test_a_ground_truth_evaluated_once_evaluates_again_the_same():
    """pycocotools' COCOeval rewrites the ground truth's segmentations as RLEs with bytes counts
    in place; a second evaluator on the same COCO object reads them and gives the same figures."""
    data, _ = tiny_coco()
    coco = coco_of(data)
    results = []
    for _ in range(2):
        evaluator = MaskScoringEvaluator(coco, category_ids=[3, 7, 9])
        for image_id, detections in HAND_MADE.items():
            evaluator.add(image_id, output(detections))
        results.append(evaluator.evaluate())
    assert any(
        isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], bytes)
        for a in coco.anns.values()
    )
    for name in ("bbox", "segm_mask_rcnn", "segm_ms_rcnn", "segm_ms_rcnn_upper_bound"):
        assert [results[1][name][s] for s in STAT_NAMES] == [results[0][name][s] for s in STAT_NAMES]
    assert results[1]["maskiou"] == results[0]["maskiou"]
