"""The side-by-side table (like the paper's Table 1, with Table 7's upper bound) and the JSON file."""

import json
import math
import os

COLUMNS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
ROWS = [
    ("segm_mask_rcnn", "Mask R-CNN  segm, ranked by classification score"),
    ("segm_ms_rcnn", "MS R-CNN    segm, ranked by mask score"),
    ("segm_ms_rcnn_upper_bound", "MS R-CNN*   segm, ground-truth MaskIoU (upper bound)"),
    ("bbox", "box AP      bbox, ranked by classification score"),
]


def _percent(value):
    # COCOeval gives -1 where a statistic has no ground truth (e.g. no small objects)
    return f"{'-':>6}" if value is None or math.isnan(value) or value < 0 else f"{100 * value:6.1f}"


def _r(value):
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def format_table(results):
    width = max(len(label) for _, label in ROWS)
    lines = [f"{'':<{width}} " + " ".join(f"{c:>6}" for c in COLUMNS)]
    for key, label in ROWS:
        lines.append(f"{label:<{width}} " + " ".join(_percent(results[key][c]) for c in COLUMNS))
    gain = 100 * (results["segm_ms_rcnn"]["AP"] - results["segm_mask_rcnn"]["AP"])
    maskiou = results["maskiou"]
    lines += [
        "",
        f"mask scoring changes segm AP by {gain:+.1f} (paper, R-18 FPN on COCO: +1.6; R-101 DCN+FPN: +1.4)",
        f"Pearson r, predicted vs ground-truth MaskIoU: {_r(maskiou['pearson_predicted_vs_gt'])} "
        f"over {maskiou['detections']} detections (top {results.get('max_detections', 100)} per image; paper: 0.74)",
        f"Pearson r with ground-truth MaskIoU: classification score {_r(maskiou['pearson_score_vs_gt'])}, "
        f"mask score {_r(maskiou['pearson_mask_score_vs_gt'])}",
        f"{results['num_images']} images, {results['num_detections']} detections",
    ]
    return "\n".join(lines + diagnostic_lines(results))


def _share(value):
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.0f}%"


def diagnostic_lines(results):
    """The lines under the table that say which part is weak (evaluation/diagnostics.py)."""
    lines = []
    classification = results.get("classification")
    if classification:
        per_category = ", ".join(f"{name} {_share(v)}" for name, v in classification["per_category"].items())
        lines.append(
            f"  classifier: the box head calls {_share(classification['gt_box_accuracy'])} of the "
            f"{classification['gt_boxes']} ground-truth boxes right ({per_category}); "
            f"{_share(classification['called_background'])} background"
        )
    maskiou = results["maskiou"]
    if "pearson_class_correct" in maskiou:
        positives = ""
        if "pearson_training_positives" in maskiou:
            r = _r(maskiou["pearson_training_positives"])
            positives = f", on its {maskiou['training_positives']} training-style positives {r}"
        lines.append(
            f"  MaskIoU head: Pearson r {_r(maskiou['pearson_class_correct'])} over the "
            f"{maskiou['class_correct_detections']} class-correct detections{positives} "
            f"(all detections: {_r(maskiou['pearson_predicted_vs_gt'])})"
        )
    kinds = maskiou.get("detection_kinds")
    if kinds and maskiou["detections"]:

        def kind(name, what):
            k = kinds[name]
            means = f"{_r(k['mean_predicted_maskiou'])} / {_r(k['mean_gt_maskiou'])}" if k["detections"] else "-"
            return f"{_share(k['share'])} {what} ({means})"

        lines.append(
            f"  detections, mean MaskIoU predicted / ground truth: {kind('class_correct', 'class-correct')}, "
            f"{kind('other_class', 'on an object of another category')}, {kind('no_object', 'on no object')}; "
            f"Pearson r without the other-category ones {_r(kinds['pearson_without_other_class'])}"
        )
    if results.get("segm_per_category"):
        per_category = ", ".join(
            f"{name} {_percent(ap['segm_mask_rcnn']).strip()} -> {_percent(ap['segm_ms_rcnn']).strip()}"
            for name, ap in results["segm_per_category"].items()
        )
        lines.append(f"  segm AP per category, classification score -> mask score: {per_category}")
    return ["", "which part is weak:", *lines] if lines else []


def _jsonable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def save_results(results, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(_jsonable(results), file, indent=2)
