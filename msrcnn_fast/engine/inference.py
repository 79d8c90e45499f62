"""Inference over a dataset, and the evaluation run behind `python -m msrcnn_fast.evaluate`."""

import os

import torch
from tqdm import tqdm

from msrcnn_fast.engine.build import build_dataset, build_model, build_test_loader, resolve_device
from msrcnn_fast.engine.checkpoint import load_checkpoint, load_model_state
from msrcnn_fast.engine.config import ConfigError
from msrcnn_fast.engine.host_memory import keep_freed_memory
from msrcnn_fast.engine.tensorboard_log import TensorBoardLog
from msrcnn_fast.evaluation import MaskScoringEvaluator, draw_detections, format_table, save_results, write_plots


def load_trained_model(cfg, checkpoint_path, *, device, categories=None):
    """(model in eval mode on `device`, categories, the iteration it was saved at or None for a
    bare state dict). The categories come from the checkpoint; `categories` (e.g. the
    evaluation set's) must agree with them, or stand in for a bare state dict that has none.
    Sets this process's malloc to keep freed blocks for reuse, as training does (host_memory):
    on 480 x 640 images on the CPU (ResNet-18 FPN, 2-core Xeon VM, four pairs of runs) the page
    faults per image went from 200-20,000 to 0-135 and the median time from 515-619 to
    505-541 ms (2-13 %); the demo's `evaluate` took 12.3-12.9 s against 12.9-13.3."""
    checkpoint = load_checkpoint(checkpoint_path)
    saved = checkpoint.get("categories")
    if saved is not None and categories is not None and [c["id"] for c in saved] != [c["id"] for c in categories]:
        raise ConfigError(
            f"{checkpoint_path}: trained on category ids {[c['id'] for c in saved]}, "
            f"but the evaluation data has {[c['id'] for c in categories]}"
        )
    categories = saved if saved is not None else categories
    if categories is None:
        raise ConfigError(f"{checkpoint_path}: holds no category list; give a dataset (data.val) to take it from")
    keep_freed_memory()
    model = build_model(cfg, num_classes=len(categories) + 1)
    load_model_state(model, checkpoint["model"], checkpoint_path)
    return model.to(device).eval(), categories, checkpoint.get("iteration")


@torch.no_grad()
def predict_batches(model, loader, *, device, amp=False):
    """Yields (image_id, image tensor on CPU, output dict on CPU, diagnostics dict on CPU) per
    image of a loader whose batches hold targets: MaskScoringRCNN.diagnose gives the plain
    forward's detections and what the heads make of the ground truth."""
    device = torch.device(device)
    for batch in loader:
        moved = batch.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            outputs, diagnostics = model.diagnose(moved.images(), moved.targets)
        for image_id, image, output, diagnosis in zip(batch.image_ids, batch.images(), outputs, diagnostics):
            yield image_id, image, {k: v.cpu() for k, v in output.items()}, {k: v.cpu() for k, v in diagnosis.items()}


def run_evaluation(cfg, checkpoint_path, *, out_dir, max_images=None, draw_images=0, draw_thresh=0.5, progress=True):
    """Evaluates a checkpoint on data.val: writes evaluation.json and the plots into out_dir, and
    the detections of the first `draw_images` images into out_dir/predictions; returns
    (results dict, table text)."""
    device = resolve_device(cfg)
    dataset = build_dataset(cfg, "val", training=False, targets=True)
    model, categories, iteration = load_trained_model(
        cfg, checkpoint_path, device=device, categories=dataset.categories
    )
    subset = dataset if max_images is None else torch.utils.data.Subset(dataset, range(min(max_images, len(dataset))))
    loader = build_test_loader(cfg, subset, device_type=device)
    evaluator = MaskScoringEvaluator(
        dataset.coco,
        category_ids=[c["id"] for c in categories],
        max_detections=cfg.test.max_detections,
        backend=cfg.evaluation.backend,
    )
    draw_dir = os.path.join(out_dir, "predictions")
    if draw_images:
        os.makedirs(draw_dir, exist_ok=True)
    outputs = predict_batches(model, loader, device=device, amp=cfg.solver.amp)
    bar = tqdm(outputs, total=len(subset), desc="evaluate", disable=not progress, mininterval=1)
    for count, (image_id, image, output, diagnostics) in enumerate(bar):
        evaluator.add(image_id, output, diagnostics)
        if count < draw_images:
            drawing = draw_detections(image, output, [c["name"] for c in categories], score_thresh=draw_thresh)
            drawing.save(os.path.join(draw_dir, f"{image_id}.png"))
    results = evaluator.evaluate()
    results.update(checkpoint=os.fspath(checkpoint_path), max_detections=cfg.test.max_detections)
    save_results(results, os.path.join(out_dir, "evaluation.json"))
    results["plots"] = write_plots(evaluator.arrays(), out_dir, classification=results.get("classification"))
    if cfg.log.tensorboard:
        board = TensorBoardLog(cfg.output_dir)
        board.write_evaluation(results, iteration, plot_dir=out_dir)
        board.close()
    return results, format_table(results)
