"""Export a trained MS R-CNN with torch.export (and AOTInductor) for deployment.

    python -m msrcnn_fast.export --config configs/NAME.yaml --checkpoint PATH --out model.pt2 [--aoti]

The whole model in evaluation mode, one image per call, of any height and width in
[--min-side, --max-side]: the exported program takes a float Tensor[3, H, W] in [0, 1] and
returns the model's dict for that image (boxes, labels, scores, masks: bool [K, 1, H, W],
mask_scores, maskiou). The msrcnn:: kernels stay custom ops in its graph (their fake kernels
give the data-dependent sizes, the number of kept boxes, as unbacked sizes). Saved with
torch.export.save; with --aoti also compiled by AOTInductor for the CPU into a package next to
it (NAME_aoti.pt2). Before it writes, the command runs the exported program against the eager
model on two image sizes and fails if any output differs; the AOTInductor package runs its own
compiled kernels for the ATen ops, so its floats may differ in the last bits: the command prints
the largest differences (and fails if a label differs).

At run time either needs torch (the same version) and the msrcnn ops registered: `import
msrcnn_fast` (or `torch.ops.load_library` of its _C extension, without the Python package).
The AOTInductor package reads its input with the example's strides: give it a contiguous image
(`image.contiguous()`; an HWC array permuted to CHW is not), or its results are wrong. It is
compiled without Inductor's layout optimisation (AOTI_CONFIGS).

The model is exported in float32 (it is loaded with model.bf16_inference=false):
a program does not depend on the CPU it was exported on, and equals that float32 eager model.
"""

import argparse
import os
import sys
import time

import torch
import torch._inductor
from torch import Tensor, nn

from msrcnn_fast.engine.build import resolve_device
from msrcnn_fast.engine.config import ConfigError, load_config
from msrcnn_fast.engine.inference import load_trained_model

__all__ = ["AOTI_CONFIGS", "SingleImageModel", "export_model", "largest_differences", "outputs_match"]


# Inductor's layout optimisation (convolutions moved to channels-last) mixed up the layout of
# the mask head's deconvolution when the number of detections is data-dependent: the kernels
# after it read its channels-last output as NCHW (MaskIoU 0.014 apart, 3-6 % of mask pixels
# flipped on the demo's model); without it the package agrees with eager.
AOTI_CONFIGS = {"layout_optimization": False}


class SingleImageModel(nn.Module):
    """``model([image])[0]``: one image in, its detections dict out (what torch.export traces)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.model([image])[0]


def export_model(model: nn.Module, *, min_side: int = 32, max_side: int = 4096, example_size=(480, 640)):
    """torch.export.ExportedProgram of `model` (an eval-mode MaskScoringRCNN) for single images
    of dynamic height and width in [min_side, max_side]. It computes in float32 whatever
    ``bf16_inference`` says (ops.bf16: float32 under tracing)."""
    if model.training:
        raise ValueError("model: export an evaluation-mode model (call model.eval() first)")
    if not 1 <= min_side <= min(example_size) <= max(example_size) <= max_side:
        raise ValueError(f"min_side, max_side: expected 1 <= {min_side} <= the example's sides <= {max_side}")
    wrapper = SingleImageModel(model).eval()
    device = next(model.parameters()).device
    example = torch.rand(3, *example_size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        wrapper(example)  # the poolers infer their scales on the first call: not a traced step
    height = torch.export.Dim("height", min=min_side, max=max_side)
    width = torch.export.Dim("width", min=min_side, max=max_side)
    with torch.no_grad():
        return torch.export.export(wrapper, (example,), dynamic_shapes={"image": {1: height, 2: width}}, strict=False)


def outputs_match(expected: dict[str, Tensor], got: dict[str, Tensor]) -> list[str]:
    """The keys whose tensors differ (shape, dtype or value; [] when all are equal)."""
    differ = [k for k in expected if k not in got]
    for key, value in expected.items():
        other = got.get(key)
        if other is not None and (
            other.shape != value.shape or other.dtype != value.dtype or not torch.equal(other, value)
        ):
            differ.append(key)
    return differ


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m msrcnn_fast.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint from training (or a model state dict)")
    parser.add_argument("--out", required=True, help="the exported program (.pt2)")
    parser.add_argument("--aoti", action="store_true", help="also compile an AOTInductor package (CPU)")
    parser.add_argument("--min-side", type=int, default=32, help="the smallest image side the program takes")
    parser.add_argument("--max-side", type=int, default=4096, help="the largest image side the program takes")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.box_score_thresh=0.3")
    return parser.parse_args(argv)


def largest_differences(expected: dict[str, Tensor], got: dict[str, Tensor]) -> dict[str, float]:
    """Per key, the largest |difference| (masks: the share of pixels that differ); a key whose
    shape or dtype differs is a ValueError."""
    result = {}
    for key, value in expected.items():
        other = got[key]
        if other.shape != value.shape or other.dtype != value.dtype:
            raise ValueError(f"{key}: {tuple(other.shape)} {other.dtype}, eager {tuple(value.shape)} {value.dtype}")
        if value.dtype == torch.bool:
            result[key] = (value != other).float().mean().item() if value.numel() else 0.0
        else:
            result[key] = (value.float() - other.float()).abs().max().item() if value.numel() else 0.0
    return result


def _images(sizes, device):
    return [torch.rand(3, *size, generator=torch.Generator().manual_seed(size[0])).to(device) for size in sizes]


def _check_exact(model, program_module, sizes, device):
    for size, image in zip(sizes, _images(sizes, device)):
        with torch.no_grad():
            differ = outputs_match(model([image])[0], program_module(image))
        if differ:
            raise RuntimeError(
                f"the exported program differs from the eager model on a {size[0]}x{size[1]} image: {differ}"
            )


def _report_differences(model, runner, sizes, device):
    """AOTInductor compiles the graph's ATen ops into its own kernels: float results may differ
    in the last bits (and a mask pixel at the threshold may flip); the labels must not."""
    lines = []
    for size, image in zip(sizes, _images(sizes, device)):
        with torch.no_grad():
            expected, got = model([image])[0], runner(image)
        differences = largest_differences(expected, got)
        if differences.get("labels", 0.0) != 0.0:
            raise RuntimeError(f"the AOTInductor package's labels differ from the eager model's on a {size} image")
        shown = ", ".join(f"{k} {v:.2g}" for k, v in differences.items())
        lines.append(f"  {size[0]}x{size[1]}: largest |difference| from eager: {shown} (masks: share of pixels)")
    return lines


def main(argv=None):
    args = parse_args(argv)
    try:
        # float32: torch.export traces the bf16_inference layers in float32 in any case
        # (ops.bf16), and the exact check below compares with this eager model
        cfg = load_config(args.config, [*args.overrides, "model.bf16_inference=false"])
        device = resolve_device(cfg)
        model, _, _ = load_trained_model(cfg, args.checkpoint, device=device)
        start = time.perf_counter()
        program = export_model(model, min_side=args.min_side, max_side=args.max_side)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sizes = [(480, 640), (max(args.min_side, 300), max(args.min_side, 200))]
    _check_exact(model, program.module(), sizes, device)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.export.save(program, args.out)
    print(f"exported in {time.perf_counter() - start:.0f} s, checked on {sizes[0]} and {sizes[1]}: wrote {args.out}")
    if args.aoti:
        start = time.perf_counter()
        package = os.path.splitext(args.out)[0] + "_aoti.pt2"
        torch._inductor.aoti_compile_and_package(program, package_path=package, inductor_configs=AOTI_CONFIGS)
        lines = _report_differences(model, torch._inductor.aoti_load_package(package), sizes, device)
        print(f"compiled by AOTInductor in {time.perf_counter() - start:.0f} s: wrote {package}")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
