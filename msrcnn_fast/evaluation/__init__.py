"""COCO evaluation (pycocotools), MaskIoU quality, plots and drawings of detections."""

from msrcnn_fast.evaluation.coco_evaluator import MaskScoringEvaluator, run_cocoeval
from msrcnn_fast.evaluation.detections import ImageDetections, detections_from_output
from msrcnn_fast.evaluation.maskiou import ground_truth_maskiou, pearson
from msrcnn_fast.evaluation.plots import write_plots
from msrcnn_fast.evaluation.report import format_table, save_results
from msrcnn_fast.evaluation.visualize import draw_detections

__all__ = [
    "ImageDetections",
    "MaskScoringEvaluator",
    "detections_from_output",
    "draw_detections",
    "format_table",
    "ground_truth_maskiou",
    "pearson",
    "run_cocoeval",
    "save_results",
    "write_plots",
]
