"""TensorBoard event files of a run (``log.tensorboard: true``), next to metrics.jsonl.

Training: every logged iteration's losses, learning rate and seconds per iteration, as scalars
``train/<name>``. Evaluation: the AP table (``eval/<row>/<stat>``, rows as in evaluation.json:
segm_mask_rcnn, segm_ms_rcnn, segm_ms_rcnn_upper_bound, bbox), the MaskIoU correlations
(``eval/maskiou/<name>``), the GT-box accuracy, and Fig. 5 as the image ``eval/fig5``, at the
evaluated checkpoint's iteration. Written with ``torch.utils.tensorboard``, which needs the
``tensorboard`` package (``pip install 'msrcnn_fast[tensorboard]'``).
"""

import math
import os

import numpy as np

from msrcnn_fast.engine.checkpoint import TENSORBOARD

__all__ = ["TensorBoardLog"]

TABLE_ROWS = ("segm_mask_rcnn", "segm_ms_rcnn", "segm_ms_rcnn_upper_bound", "bbox")
TABLE_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
FIG5 = "fig5_predicted_vs_gt_maskiou.png"


class TensorBoardLog:
    """A SummaryWriter into ``output_dir/tensorboard``, opened at the first write (a run started
    with --overwrite removes the old run's folder after its trainer is built)."""

    def __init__(self, output_dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError(
                "log.tensorboard: needs the tensorboard package (pip install 'msrcnn_fast[tensorboard]')"
            ) from error
        self.log_dir = os.path.join(output_dir, TENSORBOARD)
        self._writer_class = SummaryWriter
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            self._writer = self._writer_class(self.log_dir)
        return self._writer

    def write_training(self, iteration, record):
        """The numbers of one metrics.jsonl record (`iteration` itself is the step)."""
        for name, value in record.items():
            if name != "iteration" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{name}", float(value), iteration)
        self.writer.flush()

    def write_evaluation(self, results, iteration, plot_dir=None):
        """MaskScoringEvaluator's `results` at `iteration` (0 where unknown), and Fig. 5 from
        `plot_dir` where it was drawn."""
        step = iteration or 0
        for row in TABLE_ROWS:
            for stat in TABLE_STATS:
                value = results.get(row, {}).get(stat)
                if value is not None and value >= 0:  # COCOeval's -1: no ground truth of that size
                    self.writer.add_scalar(f"eval/{row}/{stat}", 100.0 * value, step)
        for name, value in results.get("maskiou", {}).items():
            if isinstance(value, (int, float)) and not math.isnan(value):
                self.writer.add_scalar(f"eval/maskiou/{name}", float(value), step)
        accuracy = results.get("classification", {}).get("gt_box_accuracy")
        if accuracy is not None:
            self.writer.add_scalar("eval/classification/gt_box_accuracy", float(accuracy), step)
        fig5 = os.path.join(plot_dir, FIG5) if plot_dir else None
        if fig5 and os.path.isfile(fig5):
            from PIL import Image

            with Image.open(fig5) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image("eval/fig5", pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
