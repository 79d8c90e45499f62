"""Objects built from a config: the model, datasets, data loaders, optimizer, lr schedule."""

import math
import os

import torch

from msrcnn_fast.data import (
    CocoInstances,
    Compose,
    RandomHorizontalFlip,
    ResizeMinMax,
    TrainingBatchSampler,
    collate_images,
)
from msrcnn_fast.engine.config import ConfigError, model_factory
from msrcnn_fast.engine.lr_schedule import WarmupDecayLR


def resolve_device(cfg):
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but no CUDA GPU is available")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def model_kwargs(cfg, *, num_classes):
    """The factory's keyword arguments: cfg.model without `name`, num_classes from the data."""
    kwargs = {k: v for k, v in cfg.model.items() if k != "name"}
    if kwargs.get("num_classes", num_classes) != num_classes:
        raise ConfigError(
            f"model.num_classes is {kwargs['num_classes']}, but the dataset has {num_classes - 1} categories "
            f"(+1 background = {num_classes})"
        )
    kwargs["num_classes"] = num_classes
    weights = kwargs.get("backbone_weights")
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"model.backbone_weights: {weights} does not exist (weights are never downloaded)")
    return kwargs


def build_model(cfg, *, num_classes):
    """`msrcnn_fast.model.<cfg.model.name>(**kwargs)`, kwargs from the config (model_kwargs)."""
    kwargs = model_kwargs(cfg, num_classes=num_classes)
    factory = model_factory(cfg.model.name)
    try:
        return factory(**kwargs)
    except ValueError as error:  # the model's own checks of its arguments (ranges, choices, weight files)
        raise ConfigError(f"model ({cfg.model.name}): {error}") from error


def _split_paths(cfg, split):
    entry = cfg.data[split]
    if not entry.images or not entry.annotations:
        raise ConfigError(f"data.{split}.images and data.{split}.annotations must be set")
    return os.path.join(cfg.data.root, entry.images), os.path.join(cfg.data.root, entry.annotations)


def train_transforms(cfg):
    transforms = []
    if cfg.data.train_min_size is not None:
        transforms.append(ResizeMinMax(min_size=cfg.data.train_min_size, max_size=cfg.data.train_max_size))
    if cfg.data.hflip_prob > 0:
        transforms.append(RandomHorizontalFlip(cfg.data.hflip_prob))
    return Compose(transforms)


def build_dataset(cfg, split, *, training, targets=None):
    """data[split] as a CocoInstances; with the training transforms when `training`, and the
    targets when `targets` (default: when training)."""
    image_dir, annotation_file = _split_paths(cfg, split)
    return CocoInstances(
        image_dir=image_dir,
        annotation_file=annotation_file,
        transforms=train_transforms(cfg) if training else None,
        skip_empty=cfg.data[split].skip_empty,
        with_targets=training if targets is None else targets,
    )


def images_per_rank(cfg, world_size):
    total = cfg.solver.images_per_batch
    if total % world_size:
        raise ConfigError(
            f"solver.images_per_batch ({total}) must be divisible by the number of processes ({world_size})"
        )
    return total // world_size


def build_train_loader(cfg, dataset, *, info, start_iter, device_type):
    sampler = TrainingBatchSampler(
        dataset_size=len(dataset),
        images_per_rank=images_per_rank(cfg, info.world_size),
        world_size=info.world_size,
        rank=info.rank,
        seed=cfg.solver.seed,
        start_iter=start_iter,
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_images,
        pin_memory=device_type == "cuda",
        # The loader draws its workers' base seed from this generator, not from the global RNG
        # (whose state a resumed run must find exactly as the interrupted run left it).
        generator=torch.Generator().manual_seed(cfg.solver.seed),
    )


def build_test_loader(cfg, dataset, *, device_type, num_workers=None):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.test.images_per_batch,
        shuffle=False,
        num_workers=cfg.data.num_workers if num_workers is None else num_workers,
        collate_fn=collate_images,
        pin_memory=device_type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )


def schedule_in_iterations(cfg, *, train_size):
    """(max_iter, lr_steps) in iterations, from epochs when the config gives epochs."""
    solver = cfg.solver
    if solver.max_iter is not None:
        return int(solver.max_iter), [int(s) for s in solver.lr_steps]
    iters_per_epoch = math.ceil(train_size / solver.images_per_batch)
    return round(solver.epochs * iters_per_epoch), [round(e * iters_per_epoch) for e in solver.lr_step_epochs]


def build_optimizer(cfg, model):
    """SGD with momentum (the paper's) or AdamW (``solver.optimizer``), fused (one kernel over
    all parameters; on a 2-core CPU the demo's SGD step took 23 ms per-parameter, 11 ms fused)
    where PyTorch has the fused kernel for the device."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    solver = cfg.solver
    if solver.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=solver.base_lr, weight_decay=solver.weight_decay, fused=fused or None)
    return torch.optim.SGD(
        params, lr=solver.base_lr, momentum=solver.momentum, weight_decay=solver.weight_decay, fused=fused or None
    )


def build_lr_schedule(cfg, optimizer, *, max_iter, lr_steps):
    return WarmupDecayLR(
        optimizer,
        warmup_iters=cfg.solver.warmup_iters,
        warmup_factor=cfg.solver.warmup_factor,
        decay=cfg.solver.lr_decay,
        steps=lr_steps,
        gamma=cfg.solver.gamma,
        max_iter=max_iter,
    )
