"""Draw a trained model's detections on images.

    python -m msrcnn_fast.predict --config configs/NAME.yaml --checkpoint PATH IMAGE... --out DIR

Writes DIR/<image name>.png per image: masks, boxes, class names, and both the
classification score and the mask score of every detection above --score-thresh.
"""

import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

from msrcnn_fast.engine.build import resolve_device
from msrcnn_fast.engine.config import ConfigError, load_config
from msrcnn_fast.engine.inference import load_trained_model
from msrcnn_fast.evaluation import draw_detections


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m msrcnn_fast.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="draw detections with a score >= this")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    return parser.parse_args(argv)


def read_image(path):
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise OSError(f"{path}: cannot read image: {error}") from error
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255)


def main(argv=None, *, model_factory=None):
    """`model_factory` replaces msrcnn_fast.model's factory (tests inject failures with it)."""
    args = parse_args(argv)
    try:
        missing = [path for path in args.images if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"image file(s) not found: {', '.join(missing)}")
        cfg = load_config(args.config, args.overrides)
        device = resolve_device(cfg)
        model, categories = load_trained_model(cfg, args.checkpoint, device=device, model_factory=model_factory)
        os.makedirs(args.out, exist_ok=True)
        names = [c["name"] for c in categories]
        for path in args.images:
            image = read_image(path)
            with torch.no_grad():
                output = {k: v.cpu() for k, v in model([image.to(device)])[0].items()}
            out_path = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + ".png")
            draw_detections(image, output, names, score_thresh=args.score_thresh).save(out_path)
            shown = int((output["scores"] >= args.score_thresh).sum())
            print(f"{out_path}: {shown} detections drawn (of {len(output['scores'])})")
    except (ConfigError, FileNotFoundError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
