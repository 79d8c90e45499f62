import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from msrcnn_fast.evaluation import draw_detections, format_table, save_results, write_plots
from msrcnn_fast.evaluation.coco_evaluator import STAT_NAMES
from msrcnn_fast.evaluation.visualize import category_colour


def fake_results(ap):
    stats = lambda value: {name: value for name in STAT_NAMES}  # noqa: E731
    return {
        "segm_mask_rcnn": stats(ap),
        "segm_ms_rcnn": {**stats(ap + 0.016), "APs": -1.0},
        "segm_ms_rcnn_upper_bound": stats(ap + 0.03),
        "bbox": stats(ap - 0.01),
        "maskiou": {
            "pearson_predicted_vs_gt": 0.74,
            "pearson_score_vs_gt": math.nan,
            "pearson_mask_score_vs_gt": 0.5,
            "mean_gt_maskiou": 0.6,
            "detections": 300,
        },
        "num_images": 3,
        "num_detections": 300,
    }


def test_the_table_shows_both_rankings_side_by_side():
    table = format_table(fake_results(0.277))
    lines = table.splitlines()
    assert lines[0].split() == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert lines[1].startswith("Mask R-CNN") and lines[1].split()[-6:] == ["27.7"] * 6
    assert lines[2].startswith("MS R-CNN ") and lines[2].split()[-6:] == ["29.3", "29.3", "29.3", "-", "29.3", "29.3"]
    assert lines[3].startswith("MS R-CNN*") and lines[4].startswith("box AP")
    assert "changes segm AP by +1.6" in table
    assert "predicted vs ground-truth MaskIoU: 0.740 over 300 detections" in table
    assert "classification score n/a" in table


def test_results_json_has_null_for_undefined_correlations(tmp_path):
    save_results(fake_results(0.3), tmp_path / "sub" / "evaluation.json")
    loaded = json.loads((tmp_path / "sub" / "evaluation.json").read_text())
    assert loaded["maskiou"]["pearson_score_vs_gt"] is None and loaded["segm_ms_rcnn"]["AP"] == pytest.approx(0.316)


def test_the_three_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.random(200).astype(np.float32)
    arrays = {"gt_maskiou": gt, "score": rng.random(200), "mask_score": gt * 0.9, "predicted_maskiou": gt}
    paths = write_plots(arrays, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "fig2ab_score_vs_maskiou.png",
        "fig2c_mean_score_per_maskiou_bin.png",
        "fig5_predicted_vs_gt_maskiou.png",
    ]
    for path in paths:
        assert Image.open(path).size[0] > 300


def test_figures_of_no_detections_are_still_written(tmp_path):
    empty = {k: np.zeros(0, np.float32) for k in ("gt_maskiou", "score", "mask_score", "predicted_maskiou")}
    assert len(write_plots(empty, tmp_path)) == 3


def test_drawing_colours_masks_above_the_threshold_only():
    image = torch.zeros(3, 40, 60)
    masks = torch.zeros(2, 1, 40, 60)
    masks[0, 0, 25:35, 5:15] = 0.9
    masks[1, 0, 25:35, 40:50] = 0.9
    output = {
        "boxes": torch.tensor([[5.0, 25, 15, 35], [40, 25, 50, 35]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.9, 0.3]),
        "mask_scores": torch.tensor([0.6, 0.2]),
        "masks": masks,
    }
    drawn = np.asarray(draw_detections(image, output, ["circle", "star"], score_thresh=0.5))
    assert drawn.shape == (40, 60, 3)
    assert drawn[30, 10].sum() > 0  # inside the first mask
    assert drawn[30, 45].sum() == 0  # the second is below the threshold
    assert drawn[2, 55].sum() == 0


def test_drawing_blends_each_mask_as_a_whole_canvas_blend_would():
    """Masks are blended within their bounding rows and columns (fast on a 12-megapixel photo):
    the same pixels as blending over the whole canvas, for overlapping masks, masks touching
    the borders, a mask of holes and an empty one. Boxes and labels sit in the top rows, which
    the comparison leaves out."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 50, 70, generator=generator)
    masks = torch.zeros(4, 1, 50, 70, dtype=torch.bool)
    masks[0, 0, 10:50, 0:30] = True  # touches the bottom and left borders
    masks[1, 0, 20:40, 20:70] = True  # overlaps the first, touches the right border
    masks[1, 0, 25:35:2, 30:60:3] = False  # holes
    masks[2, 0] = torch.rand(50, 70, generator=generator) > 0.7  # scattered pixels
    output = {
        "boxes": torch.tensor([[0.0, 0, 69, 3]] * 4),
        "labels": torch.tensor([1, 2, 1, 2]),
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]),
        "mask_scores": torch.tensor([0.9, 0.8, 0.7, 0.6]),
        "masks": masks,  # the fourth is empty
    }
    drawn = np.asarray(draw_detections(image, output, ["a", "b"], score_thresh=0.5))
    canvas = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(np.float32)
    for mask, label in zip(masks[:, 0].numpy(), [1, 2, 1, 2]):
        colour = np.asarray(category_colour(label), dtype=np.float32)
        canvas[mask] = canvas[mask] * (1 - 0.45) + colour * 0.45
    expected = canvas.round().astype(np.uint8)
    assert np.array_equal(drawn[16:], expected[16:])
