"""Which part of a detector is weak: the classifier, the masks or the MaskIoU head.

Three readings next to the AP table, each of which the paper's own numbers assume is sound:

- the box head's classification of the ground-truth boxes (MaskScoringRCNN.diagnose gives its
  class probabilities): accuracy overall and per category, and the confusion matrix (rows: the
  ground-truth category; columns: the predicted class, background first);
- the MaskIoU head's Pearson correlation with its target over the detections it can judge
  (class-correct: the instance of any category their mask overlaps most has their category;
  the others' ground-truth MaskIoU is 0 by definition, whatever their mask) and over the
  positives it is trained on (MaskScoringRCNN.diagnose);
- what the detections are: class-correct, on an object of another category (ground-truth
  MaskIoU 0 however good the mask: the head is never trained on such detections), or on no
  object, each with its mean predicted and ground-truth MaskIoU, and the correlation without the
  other-category ones (what holds the paper's all-detection correlation down, in one number);
- segm AP per category by both rankings (MaskScoringEvaluator).
"""

import math

import numpy as np

from msrcnn_fast.evaluation.maskiou import pearson


def classification_report(gt_labels, class_probs, category_names):
    """`gt_labels` [G] (1..K), `class_probs` [G, K + 1] (background first), `category_names` the
    K names: {gt_box_accuracy, called_background (the share predicted background), gt_boxes,
    per_category {name: accuracy, NaN without boxes}, confusion {rows, columns, counts}}."""
    names = list(category_names)
    counts = np.zeros((len(names), len(names) + 1), dtype=np.int64)
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    if len(gt_labels):
        predicted = np.asarray(class_probs).reshape(len(gt_labels), -1).argmax(axis=1)
        np.add.at(counts, (gt_labels - 1, predicted), 1)
    total = int(counts.sum())
    right = np.diag(counts[:, 1:])
    per_row = counts.sum(axis=1)
    return {
        "gt_box_accuracy": float(right.sum() / total) if total else math.nan,
        "called_background": float(counts[:, 0].sum() / total) if total else math.nan,
        "gt_boxes": total,
        "per_category": {n: float(r / c) if c else math.nan for n, r, c in zip(names, right, per_row)},
        "confusion": {"rows": names, "columns": ["background", *names], "counts": counts.tolist()},
    }


def _kinds(category_ids, best_category):
    """Boolean masks of the detections whose mask lies most on an instance of their category
    ("class_correct"), of another category ("other_class"), or on none ("no_object")."""
    category_ids, best_category = np.asarray(category_ids), np.asarray(best_category)
    on_object = best_category > 0
    return {
        "class_correct": on_object & (best_category == category_ids),
        "other_class": on_object & (best_category != category_ids),
        "no_object": ~on_object,
    }


def class_correct_pearson(predicted_maskiou, gt_maskiou, category_ids, best_category):
    """(Pearson r of predicted with ground-truth MaskIoU over the class-correct detections, how
    many there are)."""
    correct = _kinds(category_ids, best_category)["class_correct"]
    return pearson(np.asarray(predicted_maskiou)[correct], np.asarray(gt_maskiou)[correct]), int(correct.sum())


def detection_kinds(predicted_maskiou, gt_maskiou, category_ids, best_category):
    """The detections by what their mask lies on: {"class_correct", "other_class", "no_object":
    {detections, share, mean_predicted_maskiou, mean_gt_maskiou}, "pearson_without_other_class":
    Pearson r of predicted with ground-truth MaskIoU over the class-correct and no-object ones}.
    Means and shares are NaN where there are no detections (of that kind)."""
    predicted, gt = np.asarray(predicted_maskiou, np.float64), np.asarray(gt_maskiou, np.float64)
    kinds = _kinds(category_ids, best_category)
    report = {}
    for name, selected in kinds.items():
        count = int(selected.sum())
        report[name] = {
            "detections": count,
            "share": count / len(gt) if len(gt) else math.nan,
            "mean_predicted_maskiou": float(predicted[selected].mean()) if count else math.nan,
            "mean_gt_maskiou": float(gt[selected].mean()) if count else math.nan,
        }
    others = kinds["other_class"]
    report["pearson_without_other_class"] = pearson(predicted[~others], gt[~others])
    return report


def per_category_ap(evaluator):
    """{category id: AP at IoU 0.50:0.95, all areas, the most detections} from an accumulated
    COCOeval (NaN where the category has no ground truth in the evaluated images), as
    COCOeval.summarize averages it over the categories."""
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    result = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        result[int(category_id)] = float(values.mean()) if values.size else math.nan
    return result
