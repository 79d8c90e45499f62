"""Multiply-adds of a model, per module for one image and per RoI for the heads.

    python -m msrcnn_fast.flops --model msrcnn_resnet18_fpn [--height 600 --width 800]

Counted by torch.utils.flop_counter (which counts FLOPs = 2 x multiply-adds for convolutions
and matrix products) on a random image at eval, with the detector forced to keep its 100
detections. The paper reports 0.39 G for the MaskIoU head and 0.53 G for the mask head, per
RoI.
"""

import argparse
import sys
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from msrcnn_fast import model as models

__all__ = ["head_macs_per_roi", "macs_by_module"]

FACTORIES = ("msrcnn_resnet18_fpn", "msrcnn_resnet50_fpn", "msrcnn_resnet101_fpn", "msrcnn_resnet101_dcn_fpn")
PAPER_GMACS_PER_ROI = {"mask head": 0.53, "MaskIoU head": 0.39}


def _macs(fn: Callable[[], object], depth: int = 3) -> dict[str, int]:
    with FlopCounterMode(display=False, depth=depth) as counter:
        fn()
    return {name: sum(counts.values()) // 2 for name, counts in counter.get_flop_counts().items()}


def macs_by_module(model: nn.Module, image: torch.Tensor, depth: int = 3) -> dict[str, int]:
    """Multiply-adds of one eval forward pass, by module path (Global = the total)."""
    model.eval()
    with torch.no_grad():
        return _macs(lambda: model([image]), depth)


def head_macs_per_roi(model: nn.Module) -> dict[str, int]:
    """Multiply-adds of the mask head and the MaskIoU head for one RoI."""
    heads = model.roi_heads
    channels = heads.mask_head.in_channels
    with torch.no_grad():
        mask = _macs(lambda: heads.mask_head(torch.zeros(1, channels, 14, 14)))["Global"]
        maskiou = _macs(lambda: heads.maskiou_head(torch.zeros(1, heads.maskiou_head.in_channels, 14, 14)))["Global"]
    return {"mask head": mask, "MaskIoU head": maskiou}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Multiply-adds per module and per RoI of a Mask Scoring R-CNN.")
    parser.add_argument("--model", choices=FACTORIES, default="msrcnn_resnet18_fpn")
    parser.add_argument("--num-classes", type=int, default=81)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--depth", type=int, default=3, help="module nesting depth of the table (1 = top modules)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = getattr(models, args.model)(num_classes=args.num_classes, box_score_thresh=0.0, exact_aten_convs=True)
    image = torch.rand(3, args.height, args.width)
    by_module = macs_by_module(model, image, args.depth + 2)
    print(f"{args.model}: one {args.height}x{args.width} image, eval, 100 detections (random weights)")
    print(f"{'module':<48} {'GMACs':>9}")
    for name, macs in sorted(by_module.items(), key=lambda item: (item[0] != "Global", item[0])):
        name = "total" if name == "Global" else name.removeprefix("MaskScoringRCNN.")
        if name.count(".") >= args.depth:
            continue
        print(f"{'  ' * name.count('.')}{name:<{48 - 2 * name.count('.')}} {macs / 1e9:>9.3f}")
    print("per RoI (paper):")
    for name, macs in head_macs_per_roi(model).items():
        print(f"  {name:<14} {macs / 1e9:.3f} G ({PAPER_GMACS_PER_ROI[name]} G)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
