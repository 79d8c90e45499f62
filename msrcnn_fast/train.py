"""Train Mask Scoring R-CNN.

    python -m msrcnn_fast.train --config configs/NAME.yaml [key=value ...] [--resume | --overwrite]
    torchrun --nproc_per_node N -m msrcnn_fast.train --config ... (DDP: nccl on CUDA, gloo on CPU)

Writes output_dir/{config.yaml, metrics.jsonl, model_NNNNNNN.pth, model_final.pth, last_checkpoint}.
An output_dir that holds a run (any of model_final.pth, model_NNNNNNN.pth, last_checkpoint,
metrics.jsonl) is never overwritten by accident: without a flag the command stops with exit
code 2 before writing anything. --resume continues that run from its last checkpoint exactly
where it stopped (a finished run has nothing left to do unless its schedule is lengthened);
--overwrite starts over, removing that run's checkpoints, last_checkpoint, metrics.jsonl and
config.yaml. Exit codes: 0 done, 2 bad config, data or output_dir, 3 non-finite loss.
"""

import argparse
import os
import sys

import yaml

from msrcnn_fast.data import CocoFormatError
from msrcnn_fast.engine.build import resolve_device
from msrcnn_fast.engine.checkpoint import CONFIG, CheckpointError
from msrcnn_fast.engine.config import ConfigError, load_config
from msrcnn_fast.engine.distributed import init_distributed, shutdown_distributed
from msrcnn_fast.engine.trainer import NonFiniteLossError, build_trainer


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m msrcnn_fast.train",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[2],
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/shapes_demo.yaml")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--resume", action="store_true", help="continue the run in output_dir from its last checkpoint (if any)"
    )
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an output_dir that holds a run: its checkpoints, last_checkpoint, metrics.jsonl and "
        "config.yaml are removed (without --resume or --overwrite such a folder is refused)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. solver.base_lr=0.01")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        device_type = resolve_device(cfg)
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    info = init_distributed(device_type)
    try:
        trainer = build_trainer(
            cfg, info=info, device_type=device_type, resume=args.resume, overwrite=args.overwrite,
            progress=not args.no_progress,
        )  # fmt: skip
        if info.is_main:
            os.makedirs(cfg.output_dir, exist_ok=True)
            with open(os.path.join(cfg.output_dir, CONFIG), "w", encoding="utf-8") as file:
                yaml.safe_dump(cfg.to_dict(), file, sort_keys=False)
        final = trainer.run()
        if info.is_main:
            print(f"training done: {final}")
        return 0
    except (ConfigError, CocoFormatError, CheckpointError, FileNotFoundError, NonFiniteLossError) as error:
        if info.is_main:
            print(f"error: {error}", file=sys.stderr)
        return 2 if not isinstance(error, NonFiniteLossError) else 3
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    sys.exit(main())
