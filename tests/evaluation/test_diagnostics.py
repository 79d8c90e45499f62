"""The readings that say which part is weak: classification of ground-truth boxes, the MaskIoU
head's correlation over class-correct detections and training positives, AP per category."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from msrcnn_fast.evaluation import MaskScoringEvaluator, detections_from_output, format_table, write_plots
from msrcnn_fast.evaluation.diagnostics import classification_report, detection_kinds
from msrcnn_fast.evaluation.maskiou import match_ground_truth
from tests.data.coco_files import rectangle_mask, tiny_coco
from tests.evaluation.test_coco_evaluator import HAND_MADE, coco_of, output
from tests.evaluation.test_maskiou import coco, outputs


def test_classification_report_by_hand():
    # 5 boxes: category 1 right twice, once called background; category 2 once called 1, once right
    labels = np.array([1, 1, 1, 2, 2])
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.7, 0.2], [0.0, 0.1, 0.9]])
    report = classification_report(labels, probs, ["a", "b"])
    assert report["gt_box_accuracy"] == pytest.approx(3 / 5) and report["called_background"] == pytest.approx(1 / 5)
    assert report["per_category"] == pytest.approx({"a": 2 / 3, "b": 1 / 2})
    assert report["confusion"] == {
        "rows": ["a", "b"],
        "columns": ["background", "a", "b"],
        "counts": [[1, 2, 0], [0, 1, 1]],
    }
    assert report["gt_boxes"] == 5


def test_classification_report_of_no_boxes():
    report = classification_report(np.zeros(0, np.int64), np.zeros((0, 3)), ["a", "b"])
    assert math.isnan(report["gt_box_accuracy"]) and report["gt_boxes"] == 0
    assert all(math.isnan(v) for v in report["per_category"].values())


def test_best_match_of_any_category():
    """Image 1: a square (category 3) and a rectangle (7). A mask on the square called 7 is not
    class-correct (its same-class MaskIoU is 0 whatever its quality); one on nothing has no match."""
    square, nowhere = rectangle_mask(4, 6, 20, 22), rectangle_mask(0, 30, 3, 33)
    detections = detections_from_output(
        1, outputs([1, 2, 2, 1], [square, square, rectangle_mask(24, 10, 44, 30), nowhere]), [3, 7, 9]
    )
    gt_maskiou, best = match_ground_truth(detections, coco())
    assert gt_maskiou.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0])
    assert best.tolist() == [3, 3, 7, 0]


def test_detection_kinds_by_hand():
    # 5 detections: two class-correct, two on an object of another category, one on nothing
    predicted = [0.9, 0.5, 0.8, 0.6, 0.7]
    gt = [0.8, 0.4, 0.0, 0.1, 0.0]
    kinds = detection_kinds(predicted, gt, [1, 2, 1, 2, 3], [1, 2, 2, 3, 0])
    assert kinds["class_correct"] == pytest.approx(
        {"detections": 2, "share": 0.4, "mean_predicted_maskiou": 0.7, "mean_gt_maskiou": 0.6}
    )
    assert kinds["other_class"] == pytest.approx(
        {"detections": 2, "share": 0.4, "mean_predicted_maskiou": 0.7, "mean_gt_maskiou": 0.05}
    )
    assert kinds["no_object"] == pytest.approx(
        {"detections": 1, "share": 0.2, "mean_predicted_maskiou": 0.7, "mean_gt_maskiou": 0.0}
    )
    expected = np.corrcoef([0.9, 0.5, 0.7], [0.8, 0.4, 0.0])[0, 1]
    assert kinds["pearson_without_other_class"] == pytest.approx(expected)


def test_detection_kinds_of_no_detections():
    kinds = detection_kinds([], [], [], [])
    assert kinds["class_correct"]["detections"] == 0 and math.isnan(kinds["class_correct"]["share"])
    assert math.isnan(kinds["no_object"]["mean_predicted_maskiou"])
    assert math.isnan(kinds["pearson_without_other_class"])


def diagnosis(labels, probs, positives, targets):
    return {
        "gt_labels": torch.tensor(labels, dtype=torch.int64),
        "gt_class_probs": torch.tensor(probs, dtype=torch.float32).reshape(len(labels), 4),
        "positive_labels": torch.ones(len(positives), dtype=torch.int64),
        "positive_maskiou": torch.tensor(positives, dtype=torch.float32),
        "positive_maskiou_target": torch.tensor(targets, dtype=torch.float32),
    }


def test_evaluator_reports_the_diagnostics():
    data, _ = tiny_coco()
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9])
    diagnoses = {
        1: diagnosis([1, 2], [[0.1, 0.7, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1]], [0.2, 0.8], [0.3, 0.9]),
        2: diagnosis([1], [[0.1, 0.8, 0.05, 0.05]], [0.5], [0.4]),
        3: diagnosis([], [], [], []),
    }
    for image_id, detections in HAND_MADE.items():
        evaluator.add(image_id, output(detections), diagnoses[image_id])
    results = evaluator.evaluate()
    classification = results["classification"]
    assert classification["gt_box_accuracy"] == pytest.approx(2 / 3)
    assert classification["per_category"]["square"] == 1.0 and classification["per_category"]["rectangle"] == 0.0
    assert math.isnan(classification["per_category"]["unused"])
    maskiou = results["maskiou"]
    assert maskiou["training_positives"] == 3
    assert maskiou["pearson_training_positives"] == pytest.approx(np.corrcoef([0.2, 0.8, 0.5], [0.3, 0.9, 0.4])[0, 1])
    arrays = evaluator.arrays()
    correct = (arrays["best_category"] == arrays["category_id"]) & (arrays["best_category"] > 0)
    assert 2 <= maskiou["class_correct_detections"] == int(correct.sum()) < len(correct)
    expected = np.corrcoef(arrays["predicted_maskiou"][correct], arrays["gt_maskiou"][correct])[0, 1]
    assert maskiou["pearson_class_correct"] == pytest.approx(expected)
    kinds = maskiou["detection_kinds"]
    assert kinds["class_correct"]["detections"] == maskiou["class_correct_detections"]
    assert sum(kinds[k]["detections"] for k in ("class_correct", "other_class", "no_object")) == len(correct)
    assert kinds["other_class"]["detections"] == int(
        ((arrays["best_category"] != arrays["category_id"]) & (arrays["best_category"] > 0)).sum()
    )
    # AP per category: COCOeval's summary AP is their mean over the categories with ground truth
    for ranking in ("segm_mask_rcnn", "segm_ms_rcnn"):
        per_category = [results["segm_per_category"][n][ranking] for n in ("square", "rectangle")]
        assert np.mean(per_category) == pytest.approx(results[ranking]["AP"])
    assert math.isnan(results["segm_per_category"]["unused"]["segm_ms_rcnn"])
    table = format_table(results)
    assert (
        "the box head calls 67% of the 3 ground-truth boxes right (square 100%, rectangle 0%, unused n/a); "
        "33% background" in table
    )
    assert (
        f"over the {maskiou['class_correct_detections']} class-correct detections, on its 3 training-style positives"
        in table
    )
    share = f"{100 * kinds['class_correct']['share']:.0f}% class-correct"
    assert f"detections, mean MaskIoU predicted / ground truth: {share} (" in table
    assert "Pearson r without the other-category ones" in table


def test_without_diagnostics_there_is_no_classification(tmp_path):
    data, _ = tiny_coco()
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9])
    evaluator.add(1, output(HAND_MADE[1]))
    results = evaluator.evaluate()
    assert "classification" not in results and "pearson_training_positives" not in results["maskiou"]
    assert "class-correct detections" in format_table(results) and "classifier:" not in format_table(results)


def test_confusion_matrix_plot(tmp_path):
    report = classification_report(np.array([1, 2, 2]), np.eye(3)[[1, 0, 2]], ["a", "b"])
    paths = write_plots(
        {k: np.zeros(0) for k in ("gt_maskiou", "score", "mask_score", "predicted_maskiou")},
        tmp_path,
        classification=report,
    )
    assert paths[0].endswith("confusion_gt_boxes.png") and Image.open(paths[0]).size[0] > 200
