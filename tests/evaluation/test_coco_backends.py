"""evaluation.backend: faster-coco-eval's COCOeval gives the AP figures of pycocotools'."""

import sys

import numpy as np
import pytest

from msrcnn_fast.evaluation import MaskScoringEvaluator, run_cocoeval
from msrcnn_fast.evaluation.coco_evaluator import STAT_NAMES
from tests.data.coco_files import HEIGHT, WIDTH, annotation, rectangle_mask, tiny_coco
from tests.evaluation.test_coco_evaluator import HAND_MADE, coco_of, output

pytest.importorskip("faster_coco_eval")

ROWS = ("bbox", "segm_mask_rcnn", "segm_ms_rcnn", "segm_ms_rcnn_upper_bound")


def random_scene(seed, images=30):
    """Images of 1-4 rectangles of 3 categories, and detections near them: shifted and resized
    boxes, masks (rectangles with a corner cut away) shifted apart from them, some of the wrong
    category, some duplicates and false positives."""
    rng = np.random.default_rng(seed)
    data = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in (2, 5, 9)]}
    outputs = {}
    for image_id in range(1, images + 1):
        data["images"].append({"id": image_id, "file_name": f"{image_id}.png", "height": HEIGHT, "width": WIDTH})
        detections = []
        for _ in range(rng.integers(1, 5)):
            x1, y1 = rng.integers(0, 30), rng.integers(0, 24)
            x2, y2 = x1 + rng.integers(4, 18), y1 + rng.integers(4, 16)
            mask = rectangle_mask(x1, y1, x2, y2)
            category = int(rng.choice([2, 5, 9]))
            polygon = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            data["annotations"].append(annotation(len(data["annotations"]) + 1, image_id, category, mask, polygon))
            for _ in range(rng.integers(0, 3)):
                dx, dy, grow = rng.integers(-3, 4), rng.integers(-3, 4), rng.integers(-2, 3)
                box = [max(x1 + dx, 0), max(y1 + dy, 0), min(x2 + dx + grow, WIDTH), min(y2 + dy + grow, HEIGHT)]
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    continue
                label = [2, 5, 9].index(category) + 1 if rng.random() < 0.8 else int(rng.integers(1, 4))
                score, mask_score = float(rng.random()), float(rng.random())
                # the mask moves on its own: box IoU and mask IoU differ
                mx, my = rng.integers(-3, 4), rng.integers(-3, 4)
                detection_mask = rectangle_mask(max(x1 + mx, 0), max(y1 + my, 0), x2 + mx, y2 + my)
                detection_mask[y1 : y1 + rng.integers(0, 6), x1 : x1 + rng.integers(0, 6)] = 0  # not a rectangle
                detections.append((box, label, score, mask_score, detection_mask))
        if rng.random() < 0.5:
            detections.append(
                ([1, 1, 9, 9], int(rng.integers(1, 4)), float(rng.random()), 0.1, rectangle_mask(1, 1, 9, 9))
            )
        outputs[image_id] = output(detections)
    return data, outputs


def evaluate(data, outputs, backend, category_ids):
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=category_ids, backend=backend)
    for image_id, out in outputs.items():
        evaluator.add(image_id, out)
    return evaluator.evaluate()


def assert_same_figures(ours, theirs):
    for row in ROWS:
        assert [theirs[row][s] for s in STAT_NAMES] == pytest.approx([ours[row][s] for s in STAT_NAMES], abs=1e-4)
        assert theirs[row]["per_category"].keys() == ours[row]["per_category"].keys()
        for category, ap in ours[row]["per_category"].items():
            assert theirs[row]["per_category"][category] == pytest.approx(ap, abs=1e-4, nan_ok=True)
        assert "Average Precision" in theirs[row]["summary"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_backends_give_the_same_ap_on_random_scenes(seed):
    data, outputs = random_scene(seed)
    pycocotools = evaluate(data, outputs, "pycocotools", [2, 5, 9])
    faster = evaluate(data, outputs, "faster_coco_eval", [2, 5, 9])
    assert_same_figures(pycocotools, faster)
    # the scenes must exercise the rankings: they give different AP here
    assert pycocotools["segm_mask_rcnn"]["AP"] != pycocotools["segm_ms_rcnn"]["AP"]
    assert 0 < pycocotools["segm_mask_rcnn"]["AP"] < 1 and 0 < pycocotools["bbox"]["AP"] < 1
    assert pycocotools["bbox"]["AP"] != pycocotools["segm_mask_rcnn"]["AP"]


def test_both_backends_on_the_hand_made_set_and_on_no_detections():
    data, _ = tiny_coco()
    outputs = {image_id: output(detections) for image_id, detections in HAND_MADE.items()}
    assert_same_figures(
        evaluate(data, outputs, "pycocotools", [3, 7, 9]), evaluate(data, outputs, "faster_coco_eval", [3, 7, 9])
    )
    empty = {image_id: output([]) for image_id in HAND_MADE}
    faster = evaluate(data, empty, "faster_coco_eval", [3, 7, 9])
    assert faster["segm_ms_rcnn"]["AP"] == 0.0 and faster["bbox"]["AP"] == 0.0


def test_run_cocoeval_takes_either_backend_and_the_same_ground_truth():
    data, outputs = random_scene(3, images=5)
    evaluator = MaskScoringEvaluator(coco_of(data), category_ids=[2, 5, 9])
    for image_id, out in outputs.items():
        evaluator.add(image_id, out)
    records = evaluator.coco_records()["segm_ms_rcnn"]
    first = run_cocoeval(evaluator.coco_gt, records, "segm", backend="pycocotools")
    second = run_cocoeval(evaluator.coco_gt, records, "segm", backend="faster_coco_eval")
    assert [second[s] for s in STAT_NAMES] == pytest.approx([first[s] for s in STAT_NAMES], abs=1e-4)


def test_an_unknown_backend_or_a_missing_package_is_a_clear_error(monkeypatch):
    data, _ = tiny_coco()
    with pytest.raises(
        ValueError, match="evaluation.backend: expected one of pycocotools, faster_coco_eval, got 'fast'"
    ):
        MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9], backend="fast")
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    with pytest.raises(ImportError, match=r"evaluation.backend: faster_coco_eval needs .*msrcnn_fast\[fast-eval\]"):
        MaskScoringEvaluator(coco_of(data), category_ids=[3, 7, 9], backend="faster_coco_eval")
