"""Draw a trained model's detections on images.

    python -m msrcnn_fast.predict --config configs/NAME.yaml --checkpoint PATH IMAGE... --out DIR

Writes DIR/<image name>.png per image: masks, boxes, class names, and both the
classification score and the mask score of every detection above --score-thresh. Images of
any PIL mode are read as RGB (16-bit grayscale scaled, alpha dropped: msrcnn_fast/data/images.py).
Two inputs with the same name (a/x.jpg, b/x.png) get x.png and x-2.png, and no drawing replaces
an input (x.png drawn into its own folder is x-2.png). An image that cannot be read is
reported and skipped; the others are still drawn, and the exit code is then 2.
"""

import argparse
import os
import sys

import torch

from msrcnn_fast.data.images import ImageFileError, read_rgb
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


def output_names(paths, out_dir):
    """One distinct output file name per input path: <name>.png, then <name>-2.png, ... for
    inputs whose names (without folder and extension) repeat, or whose output would replace an
    input image (--out the images' own folder)."""
    inputs = {os.path.realpath(path) for path in paths}
    names, used = [], set()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, count = f"{stem}.png", 1
        while name in used or os.path.realpath(os.path.join(out_dir, name)) in inputs:
            count += 1
            name = f"{stem}-{count}.png"
        used.add(name)
        names.append(name)
    return names


def main(argv=None):
    args = parse_args(argv)
    try:
        missing = [path for path in args.images if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"image file(s) not found: {', '.join(missing)}")
        cfg = load_config(args.config, args.overrides)
        device = resolve_device(cfg)
        model, categories, _ = load_trained_model(cfg, args.checkpoint, device=device)
        os.makedirs(args.out, exist_ok=True)
        names = [c["name"] for c in categories]
        unreadable = 0
        for path, out_name in zip(args.images, output_names(args.images, args.out)):
            try:
                image = read_rgb(path)
            except ImageFileError as error:
                print(f"error: {error} (skipped)", file=sys.stderr)
                unreadable += 1
                continue
            with torch.no_grad():
                output = {k: v.cpu() for k, v in model([image.to(device)])[0].items()}
            out_path = os.path.join(args.out, out_name)
            draw_detections(image, output, names, score_thresh=args.score_thresh).save(out_path)
            shown = int((output["scores"] >= args.score_thresh).sum())
            print(f"{out_path}: {shown} detections drawn (of {len(output['scores'])})")
    except (ConfigError, FileNotFoundError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if unreadable:
        print(f"error: {unreadable} of {len(args.images)} images could not be read", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
