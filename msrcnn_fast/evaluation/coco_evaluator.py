"""COCO evaluation of Mask Scoring R-CNN, as in the paper's Tables 1 and 7.

All AP figures come from COCOeval: pycocotools' (the default backend), or faster-coco-eval's
COCOeval_faster (``backend="faster_coco_eval"``, ``pip install msrcnn_fast[fast-eval]``), the
same figures (tests/evaluation/test_coco_backends.py) computed in C++. Segmentation is evaluated three times, with
the same masks and only the ranking score changed:
  - Mask R-CNN: ranked by the classification score;
  - MS R-CNN: ranked by the mask score (classification score x predicted MaskIoU);
  - MS R-CNN*: the upper bound, classification score x ground-truth MaskIoU where that is > 0
    (the predicted MaskIoU elsewhere), paper Sec. 4.4.
Boxes are evaluated ranked by the classification score.
"""

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from msrcnn_fast.evaluation.detections import detections_from_output
from msrcnn_fast.evaluation.diagnostics import (
    class_correct_pearson,
    classification_report,
    detection_kinds,
    per_category_ap,
)
from msrcnn_fast.evaluation.maskiou import match_ground_truth, pearson

STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
BACKENDS = ("pycocotools", "faster_coco_eval")
SEGM_RANKINGS = {
    "segm_mask_rcnn": "classification score",
    "segm_ms_rcnn": "mask score",
    "segm_ms_rcnn_upper_bound": "classification score x ground-truth MaskIoU",
}


def _backend(backend):
    """(COCO class, COCOeval class) of a backend."""
    if backend == "pycocotools":
        return COCO, COCOeval
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO as FasterCOCO
            from faster_coco_eval import COCOeval_faster
        except ImportError as error:
            raise ImportError(
                "evaluation.backend: faster_coco_eval needs the faster-coco-eval package "
                "(pip install 'msrcnn_fast[fast-eval]')"
            ) from error
        return FasterCOCO, COCOeval_faster
    raise ValueError(f"evaluation.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")


def ground_truth_for(coco_gt, backend="pycocotools"):
    """`coco_gt` (a pycocotools COCO) as the backend's COCO object (the same one for pycocotools)."""
    coco_class, _ = _backend(backend)
    if isinstance(coco_gt, coco_class):
        return coco_gt
    with contextlib.redirect_stdout(io.StringIO()):
        converted = coco_class()
        converted.dataset = copy.deepcopy(coco_gt.dataset)
        converted.createIndex()
    return converted


def results_as_coco(coco_gt, records):
    """A COCO object of detection `records` (loadRes, which fails on an empty list), of coco_gt's class."""
    if records:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(copy.deepcopy(records))
    empty = type(coco_gt)()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "categories": coco_gt.dataset["categories"]}
    empty.dataset["annotations"] = []
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def run_cocoeval(coco_gt, records, iou_type, image_ids=None, *, backend="pycocotools"):
    """COCOeval on `records` (COCO result dicts); returns {stat name: value, "summary": text,
    "per_category": {category id: AP}}. `image_ids` limits the evaluation to those images
    (default: all of coco_gt). `backend`: one of BACKENDS (coco_gt is converted to it if needed)."""
    _, evaluator_class = _backend(backend)
    coco_gt = ground_truth_for(coco_gt, backend)
    coco_dt = results_as_coco(coco_gt, records)
    # faster-coco-eval logs its summary unless given a print function; pycocotools prints it
    options = {"print_function": print} if backend == "faster_coco_eval" else {}
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        evaluator = evaluator_class(coco_gt, coco_dt, iou_type, **options)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    stats["summary"] = text.getvalue().strip()
    stats["per_category"] = per_category_ap(evaluator)
    return stats


def bbox_records(detections):
    records = []
    for box, category_id, score in zip(detections.boxes, detections.category_ids, detections.scores):
        x1, y1, x2, y2 = (float(v) for v in box)
        records.append(
            {
                "image_id": detections.image_id,
                "category_id": int(category_id),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
            }
        )
    return records


def segm_records(detections, scores):
    return [
        {
            "image_id": detections.image_id,
            "category_id": int(category_id),
            "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
            "score": float(score),
        }
        for rle, category_id, score in zip(detections.rles, detections.category_ids, scores)
    ]


def upper_bound_scores(scores, predicted_maskiou, gt_maskiou):
    """MS R-CNN*: ground-truth MaskIoU in place of the prediction where it is > 0."""
    return scores * np.where(gt_maskiou > 0, gt_maskiou, predicted_maskiou)


class MaskScoringEvaluator:
    """Collects detections image by image (`add`), then evaluates them all (`evaluate`).

    `coco_gt` is the ground truth (a pycocotools COCO, e.g. CocoInstances.coco);
    `category_ids[label - 1]` maps the model's labels to its category ids; `backend`: the
    COCOeval that computes the AP figures (BACKENDS).
    """

    def __init__(self, coco_gt, *, category_ids, max_detections=100, backend="pycocotools"):
        _backend(backend)  # a bad name or a missing package fails here, before any inference
        self.backend = backend
        self.coco_gt = coco_gt
        self.category_ids = list(category_ids)
        self.max_detections = max_detections
        self.detections = []
        self.gt_maskiou = []
        self.best_category = []
        self.diagnostics = []

    def add(self, image_id, output, diagnostics=None):
        """One image's model output; `diagnostics`: its MaskScoringRCNN.diagnose dict, if any."""
        if image_id not in self.coco_gt.imgs:
            raise KeyError(f"image id {image_id} is not in the ground truth")
        detections = detections_from_output(image_id, output, self.category_ids, self.max_detections)
        gt_maskiou, best_category = match_ground_truth(detections, self.coco_gt)
        self.detections.append(detections)
        self.gt_maskiou.append(gt_maskiou)
        self.best_category.append(best_category)
        if diagnostics is not None:
            self.diagnostics.append({k: v.detach().cpu().float().numpy() for k, v in diagnostics.items()})

    def _concatenate(self, field):
        values = [getattr(d, field) for d in self.detections]
        return np.concatenate(values) if values else np.zeros(0, np.float32)

    def arrays(self):
        """Per-detection arrays over all images: score, mask_score, predicted and GT MaskIoU,
        category_id and best_category (the category of the instance it overlaps most)."""
        return {
            "score": self._concatenate("scores"),
            "mask_score": self._concatenate("mask_scores"),
            "predicted_maskiou": self._concatenate("predicted_maskiou"),
            "gt_maskiou": np.concatenate(self.gt_maskiou) if self.gt_maskiou else np.zeros(0, np.float32),
            "category_id": self._concatenate("category_ids").astype(np.int64),
            "best_category": np.concatenate(self.best_category) if self.best_category else np.zeros(0, np.int64),
        }

    def _diagnostics(self, key):
        return np.concatenate([d[key] for d in self.diagnostics]) if self.diagnostics else np.zeros(0)

    def coco_records(self):
        """COCO result lists: "bbox" and one "segm" list per ranking (SEGM_RANKINGS)."""
        records = {"bbox": [], **{name: [] for name in SEGM_RANKINGS}}
        for detections, gt_maskiou in zip(self.detections, self.gt_maskiou):
            records["bbox"] += bbox_records(detections)
            records["segm_mask_rcnn"] += segm_records(detections, detections.scores)
            records["segm_ms_rcnn"] += segm_records(detections, detections.mask_scores)
            upper = upper_bound_scores(detections.scores, detections.predicted_maskiou, gt_maskiou)
            records["segm_ms_rcnn_upper_bound"] += segm_records(detections, upper)
        return records

    def evaluate(self):
        """{"bbox", "segm_mask_rcnn", "segm_ms_rcnn", "segm_ms_rcnn_upper_bound": COCO stats,
        "maskiou": correlations, "segm_per_category": {name: AP by both rankings}, "num_images",
        "num_detections", and with diagnostics: "classification" (evaluation/diagnostics.py)}."""
        image_ids = [d.image_id for d in self.detections]
        results = {}
        coco_gt = ground_truth_for(self.coco_gt, self.backend)
        for name, records in self.coco_records().items():
            iou_type = "bbox" if name == "bbox" else "segm"
            results[name] = run_cocoeval(coco_gt, records, iou_type, image_ids, backend=self.backend)
        arrays = self.arrays()
        gt = arrays["gt_maskiou"]
        class_correct, class_correct_count = class_correct_pearson(
            arrays["predicted_maskiou"], gt, arrays["category_id"], arrays["best_category"]
        )
        results["maskiou"] = {
            "pearson_predicted_vs_gt": pearson(arrays["predicted_maskiou"], gt),
            "pearson_score_vs_gt": pearson(arrays["score"], gt),
            "pearson_mask_score_vs_gt": pearson(arrays["mask_score"], gt),
            "mean_gt_maskiou": float(gt.mean()) if len(gt) else float("nan"),
            "detections": int(len(gt)),
            "pearson_class_correct": class_correct,
            "class_correct_detections": class_correct_count,
            "detection_kinds": detection_kinds(
                arrays["predicted_maskiou"], gt, arrays["category_id"], arrays["best_category"]
            ),
        }
        names = {c: self.coco_gt.cats[c]["name"] for c in self.category_ids}
        results["segm_per_category"] = {
            names[c]: {r: results[r]["per_category"].get(c, float("nan")) for r in ("segm_mask_rcnn", "segm_ms_rcnn")}
            for c in self.category_ids
        }
        if self.diagnostics:
            positives = self._diagnostics("positive_maskiou")
            results["maskiou"]["pearson_training_positives"] = pearson(
                positives, self._diagnostics("positive_maskiou_target")
            )
            results["maskiou"]["training_positives"] = int(len(positives))
            results["classification"] = classification_report(
                self._diagnostics("gt_labels").astype(np.int64),
                self._diagnostics("gt_class_probs"),
                list(names.values()),
            )
        results["num_images"] = len(image_ids)
        results["num_detections"] = int(len(gt))
        return results
