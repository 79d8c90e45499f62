"""The demo behind `make demo`: MS R-CNN end to end on the built-in shapes dataset, on the CPU.

    python -m msrcnn_fast.demo [--config configs/shapes_demo.yaml] [key=value ...]

1. generates the shapes dataset (data.shapes) into data.root unless it is there already (from
   the current version of the generator);
2. trains, always resuming output_dir's run (so a second run only evaluates; delete output_dir
   to train again);
3. evaluates on the validation split: prints the side-by-side table, writes
   output_dir/eval/evaluation.json and the plots;
4. draws the detections of a few validation images into output_dir/eval/predictions.
"""

import argparse
import json
import os
import sys
import time

from msrcnn_fast.data import shapes
from msrcnn_fast.engine.build import resolve_device
from msrcnn_fast.engine.config import ConfigError, load_config
from msrcnn_fast.engine.distributed import ProcessInfo
from msrcnn_fast.engine.inference import run_evaluation
from msrcnn_fast.engine.trainer import NonFiniteLossError, build_trainer

DRAWN_IMAGES = 6
DRAW_SCORE_THRESH = 0.3  # a model trained for minutes from scratch is rarely more confident


def _current(annotation_file, generated):
    """Whether annotation_file exists and, where the config generates its data (`generated`) and
    the shapes generator wrote it, its current version did."""
    if not os.path.isfile(annotation_file):
        return False
    if not generated:  # a user's dataset: its annotation file (COCO's: 450 MB) is not read here
        return True
    with open(annotation_file, encoding="utf-8") as file:
        info = json.load(file).get("info") or {}
    if not str(info.get("description", "")).startswith(shapes.DESCRIPTION) or info.get("version") == shapes.VERSION:
        return True
    print(f"{annotation_file} was written by an earlier version of the shapes generator: writing it again")
    return False


def ensure_shapes_dataset(cfg):
    """Generates the shapes dataset described by cfg.data.shapes if its annotation files are missing
    or were written by an earlier version of the generator."""
    splits = {"train": cfg.data.train, "val": cfg.data.val}
    spec = cfg.data.shapes
    missing = [
        s for s, entry in splits.items() if not _current(os.path.join(cfg.data.root, entry.annotations), bool(spec))
    ]
    if not missing:
        return False
    if not spec:
        raise ConfigError(f"data.{missing[0]}.annotations does not exist and data.shapes does not say how to make it")
    for split in missing:
        entry = splits[split]
        if (entry.images, entry.annotations) != (split, f"annotations/instances_{split}.json"):
            raise ConfigError(
                f"data.{split}: the shapes generator writes images={split}, "
                f"annotations=annotations/instances_{split}.json; the config says {entry.images}, {entry.annotations}"
            )
        start = time.perf_counter()
        shapes.write_split(
            cfg.data.root, split, spec[split], spec.get("seed", 0),
            min_size=spec.get("min_size", 224), max_size=spec.get("max_size", 320),
        )  # fmt: skip
        print(f"generated {spec[split]} {split} images in {cfg.data.root} ({time.perf_counter() - start:.0f} s)")
    return True


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m msrcnn_fast.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/shapes_demo.yaml")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. solver.max_iter=100")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        cfg = load_config(args.config, args.overrides)
        ensure_shapes_dataset(cfg)
        device_type = resolve_device(cfg)
        stage = time.perf_counter()
        trainer = build_trainer(
            cfg, info=ProcessInfo(), device_type=device_type, resume=True,
            progress=not args.no_progress,
        )  # fmt: skip
        final = trainer.run()
        print(f"trained to {final} ({time.perf_counter() - stage:.0f} s)")
        stage = time.perf_counter()
        out_dir = os.path.join(cfg.output_dir, "eval")
        results, table = run_evaluation(
            cfg, final, out_dir=out_dir, draw_images=DRAWN_IMAGES,
            draw_thresh=DRAW_SCORE_THRESH,
            progress=not args.no_progress,
        )  # fmt: skip
        print(f"evaluated {results['num_images']} images ({time.perf_counter() - stage:.0f} s)\n")
        print(table)
    except (ConfigError, FileNotFoundError, ValueError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"\nplots: {', '.join(results['plots'])}")
    print(
        f"results: {os.path.join(out_dir, 'evaluation.json')}; drawn detections: {os.path.join(out_dir, 'predictions')}"
    )
    print(f"demo done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
