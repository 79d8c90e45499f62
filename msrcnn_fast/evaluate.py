"""Evaluate a checkpoint on the config's data.val with COCOeval (bbox and segm).

    python -m msrcnn_fast.evaluate --config configs/NAME.yaml --checkpoint PATH [key=value ...]

Prints the paper's Table 1 side by side: segm AP ranked by classification score (Mask R-CNN)
and by mask score (MS R-CNN), the MS R-CNN* upper bound and box AP, and the Pearson
correlation of predicted with ground-truth MaskIoU. Writes evaluation.json and the plots
(paper Fig. 2 and Fig. 5) into --out (default: output_dir/eval).
"""

import argparse
import os
import sys

from msrcnn_fast.data import CocoFormatError
from msrcnn_fast.engine.config import ConfigError, load_config
from msrcnn_fast.engine.inference import run_evaluation


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m msrcnn_fast.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint from training (or a model state dict)")
    parser.add_argument("--out", help="folder for evaluation.json and the plots (default: output_dir/eval)")
    parser.add_argument("--max-images", type=int, help="evaluate the first N images of data.val only")
    parser.add_argument("--draw", type=int, default=0, metavar="N", help="draw the first N images' detections too")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. test.max_detections=100")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        out_dir = args.out or os.path.join(cfg.output_dir, "eval")
        results, table = run_evaluation(
            cfg, args.checkpoint, out_dir=out_dir, max_images=args.max_images,
            draw_images=args.draw, progress=not args.no_progress,
        )  # fmt: skip
    except (ConfigError, CocoFormatError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nwrote {os.path.join(out_dir, 'evaluation.json')} and plots: {', '.join(results['plots'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
