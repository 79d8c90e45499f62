"""The training loop: SGD with warm-up and step decay, AMP on CUDA, DDP, a progress bar,
JSONL metrics, atomic checkpoints, exact resume and a stop on a non-finite loss.

Exact resume: a checkpoint taken after iteration i holds everything the next iteration
depends on: weights, optimizer (momentum), lr schedule, grad scaler, every rank's RNG states
(the detector samples RoIs at random) and i itself, from which the data order follows
(data/sampler.py: batches and their augmentation are functions of (seed, iteration)).
"""

import math
import os
import time
import warnings

import torch
from tqdm import tqdm

from msrcnn_fast.engine import checkpoint as ckpt
from msrcnn_fast.engine.build import (
    build_dataset,
    build_lr_schedule,
    build_model,
    build_optimizer,
    build_train_loader,
    schedule_in_iterations,
)
from msrcnn_fast.engine.config import ConfigError
from msrcnn_fast.engine.distributed import gather_objects, mean_over_processes
from msrcnn_fast.engine.host_memory import keep_freed_memory
from msrcnn_fast.engine.metrics_log import MetricsLog
from msrcnn_fast.engine.rng import capture_rng_state, restore_rng_state, seed_everything
from msrcnn_fast.engine.tensorboard_log import TensorBoardLog

MODEL_TARGET_KEYS = ("boxes", "labels", "masks")


class NonFiniteLossError(FloatingPointError):
    """The loss (or, after an update, the weights) became NaN or infinite; training stopped
    without writing a checkpoint of that state."""


class OutputDirHoldsRunError(ConfigError):
    """output_dir holds a run (checkpoint.run_files), and the new one was asked neither to
    resume it nor to overwrite it. Nothing was written."""


def _short(name):
    return name[5:] if name.startswith("loss_") else name


class Trainer:
    """Runs iterations start_iter..max_iter of one (possibly DDP-wrapped) model."""

    def __init__(
        self,
        *,
        cfg,
        model,
        optimizer,
        lr_schedule,
        loader,
        max_iter,
        iters_per_epoch,
        info,
        device,
        categories,
        start_iter=0,
        progress=True,
    ):
        self.cfg = cfg
        self.model = model
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.loader = loader
        self.max_iter = max_iter
        self.iters_per_epoch = iters_per_epoch
        self.info = info
        self.device = torch.device(device)
        self.categories = categories
        self.iteration = start_iter
        self.amp = cfg.solver.amp and self.device.type == "cuda"
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.output_dir = cfg.output_dir
        self.progress = progress and info.is_main
        self.metrics = MetricsLog(os.path.join(self.output_dir, ckpt.METRICS)) if info.is_main else None
        self.tensorboard = TensorBoardLog(self.output_dir) if info.is_main and cfg.log.tensorboard else None

    @property
    def bare_model(self):
        return self.model.module if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) else self.model

    def state(self):
        """This rank's part of a checkpoint (collective: every rank must call it)."""
        rng_states = gather_objects(capture_rng_state(), self.info)
        return {
            "iteration": self.iteration,
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict(),
            "rng": rng_states,
            "world_size": self.info.world_size,
            "config": self.cfg.to_dict(),
            "categories": self.categories,
        }

    def _diverged(self, iteration, what):
        last = ckpt.find_last_checkpoint(self.output_dir)
        return NonFiniteLossError(
            f"iteration {iteration}: {what}; training stopped. Last good checkpoint: {last or 'none written yet'}. "
            "Lower solver.base_lr, lengthen solver.warmup_iters or set solver.grad_clip_norm."
        )

    def save(self, name):
        # A finite loss can still give a non-finite update (an overflowing gradient without AMP's
        # scaler): such weights must not become the "last good checkpoint".
        bad = [n for n, p in self.bare_model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            listed = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
            raise self._diverged(self.iteration, f"parameters became non-finite ({listed}), not saved")
        state = self.state()
        if self.info.is_main:
            ckpt.save_checkpoint(os.path.join(self.output_dir, name), state)
            ckpt.write_last_checkpoint(self.output_dir, name)
            if name != ckpt.FINAL:
                ckpt.remove_old_checkpoints(self.output_dir, self.cfg.solver.keep_checkpoints)

    def load(self, checkpoint, path):
        """Restores the state of `checkpoint`, read from `path`."""
        try:
            ckpt.load_model_state(self.bare_model, checkpoint["model"], path)
        except ckpt.CheckpointError as error:
            raise ckpt.CheckpointError(
                f"{error}. Train into another output_dir, or start over in this one (train --overwrite, or remove "
                "the folder)"
            ) from None
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.lr_schedule.load_state_dict(checkpoint["lr_schedule"])
        self.grad_scaler.load_state_dict(checkpoint["grad_scaler"])
        self.iteration = checkpoint["iteration"]
        if checkpoint["world_size"] == self.info.world_size:
            restore_rng_state(checkpoint["rng"][self.info.rank])
        else:
            warnings.warn(
                f"resuming on {self.info.world_size} processes from a checkpoint of {checkpoint['world_size']}: "
                "random states are re-seeded, so the run will not repeat an uninterrupted one exactly",
                stacklevel=2,
            )
            seed_everything(self.cfg.solver.seed + 7919 * self.iteration + self.info.rank)

    def _model_targets(self, batch):
        return [{k: t[k] for k in MODEL_TARGET_KEYS} for t in batch.targets]

    def step(self, batch):
        """One iteration; returns the loss terms averaged over processes."""
        batch = batch.to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            loss_dict = self.model(batch.images(), self._model_targets(batch))
        losses = sum(loss_dict.values())
        # Reduced before backward, so every rank sees the same values and stops together.
        terms = mean_over_processes(loss_dict, self.info)
        if not all(math.isfinite(v) for v in terms.values()):
            values = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
            raise self._diverged(self.iteration + 1, f"the loss is not finite ({values})")
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(losses).backward()
        if self.cfg.solver.grad_clip_norm:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.bare_model.parameters(), self.cfg.solver.grad_clip_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.lr_schedule.step()
        self.iteration += 1
        return terms

    def run(self):
        """Trains to max_iter; returns the final checkpoint's path."""
        final = os.path.join(self.output_dir, ckpt.FINAL)
        if self.iteration >= self.max_iter:
            return final
        if self.metrics:
            self.metrics.truncate_after(self.iteration)
        self.model.train()
        bar = tqdm(total=self.max_iter, initial=self.iteration, desc="train", disable=not self.progress, mininterval=1)
        period, log_period = self.cfg.solver.checkpoint_period, self.cfg.solver.log_period
        window_start, window_data = time.perf_counter(), 0.0
        batches = iter(self.loader)
        while self.iteration < self.max_iter:
            fetch_start = time.perf_counter()
            batch = next(batches)
            window_data += time.perf_counter() - fetch_start
            lr = self.optimizer.param_groups[0]["lr"]
            terms = self.step(batch)
            bar.update(1)
            shown = {"lr": f"{lr:.2g}", "loss": f"{sum(terms.values()):.3f}"}
            bar.set_postfix({**shown, **{_short(k): f"{v:.3f}" for k, v in terms.items()}}, refresh=False)
            done = self.iteration == self.max_iter
            if self.metrics and (self.iteration % log_period == 0 or done):
                elapsed = time.perf_counter() - window_start
                count = self.iteration % log_period or log_period
                record = dict(
                    iteration=self.iteration,
                    epoch=self.iteration / self.iters_per_epoch,
                    lr=lr,
                    loss=sum(terms.values()),
                    **terms,
                    seconds_per_iter=elapsed / count,
                    data_seconds_per_iter=window_data / count,
                    eta_seconds=elapsed / count * (self.max_iter - self.iteration),
                )
                self.metrics.write(**record)
                if self.tensorboard:
                    self.tensorboard.write_training(self.iteration, record)
                window_start, window_data = time.perf_counter(), 0.0
            if done:
                self.save(ckpt.FINAL)
            elif period and self.iteration % period == 0:
                self.save(ckpt.periodic_checkpoint_name(self.iteration))
        bar.close()
        if self.tensorboard:
            self.tensorboard.close()
        return final


def _wrap_distributed(cfg, model, info, device_type):
    if not info.distributed:
        return model
    if device_type == "cuda" and cfg.solver.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()):
        warnings.warn(
            "DDP without SyncBatchNorm: BatchNorm statistics are per process (SyncBatchNorm needs CUDA)", stacklevel=2
        )
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[info.local_rank] if device_type == "cuda" else None,
        find_unused_parameters=cfg.solver.find_unused_parameters,
    )


def _on_main(function, info):
    """function()'s result on rank 0, returned on every rank; an exception it raises there is
    raised on every rank too (as ConfigError), so all ranks take the same decision and none waits
    in a collective for a rank that has left."""
    result = None
    if info.is_main:
        try:
            result = ("ok", function())
        except OSError as error:
            result = ("error", str(error))
    kind, value = gather_objects(result, info)[0]
    if kind == "error":
        raise ConfigError(value)
    return value


def check_output_dir(cfg, *, info, resume, overwrite):
    """The run files output_dir holds (rank 0's view, on every rank); OutputDirHoldsRunError if
    it holds a run and the new one neither resumes nor overwrites it."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    existing = _on_main(lambda: ckpt.run_files(cfg.output_dir), info)
    if existing and not (resume or overwrite):
        listed = ", ".join(existing[:4]) + (", ..." if len(existing) > 4 else "")
        raise OutputDirHoldsRunError(
            f"output_dir {cfg.output_dir} holds a run ({listed}); nothing was written. Continue it with --resume, "
            f"write this run to another output_dir (output_dir=PATH), or start over there with --overwrite "
            f"(removes that run's checkpoints, last_checkpoint, metrics.jsonl and config.yaml)"
        )
    return existing


def build_trainer(cfg, *, info, device_type, resume=False, overwrite=False, progress=True):
    """Everything a run needs, restored from output_dir's last checkpoint when `resume` (a fresh
    start if there is none yet). Without `resume`, an output_dir that holds a run
    (checkpoint.run_files) is an OutputDirHoldsRunError, raised before anything else is done,
    unless `overwrite`: then, once everything is built, that run's files are removed."""
    existing = check_output_dir(cfg, info=info, resume=resume, overwrite=overwrite)
    keep_freed_memory()
    dataset = build_dataset(cfg, "train", training=True)
    if len(dataset) == 0:
        raise ConfigError(f"data.train: {dataset.annotation_file} lists no image to train on")
    max_iter, lr_steps = schedule_in_iterations(cfg, train_size=len(dataset))
    if cfg.model.get("norm") == "frozen_bn" and cfg.model.get("backbone_weights") is None:
        warnings.warn(
            "model.norm is frozen_bn but model.backbone_weights is not set: frozen BatchNorm keeps its initial "
            "statistics, so a backbone trained from scratch needs norm: gn (or bn)",
            stacklevel=2,
        )
    seed_everything(cfg.solver.seed)  # the same initial weights on every rank
    model = build_model(cfg, num_classes=dataset.num_classes).to(device_type)
    seed_everything(cfg.solver.seed + info.rank)
    optimizer = build_optimizer(cfg, model)
    lr_schedule = build_lr_schedule(cfg, optimizer, max_iter=max_iter, lr_steps=lr_steps)
    checkpoint = ckpt.find_last_checkpoint(cfg.output_dir) if resume else None
    loaded = ckpt.load_checkpoint(checkpoint) if checkpoint else None
    start_iter = loaded["iteration"] if loaded is not None else 0
    loader = build_train_loader(cfg, dataset, info=info, start_iter=start_iter, device_type=device_type)
    trainer = Trainer(
        cfg=cfg,
        model=_wrap_distributed(cfg, model, info, device_type),
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        loader=loader,
        max_iter=max_iter,
        iters_per_epoch=loader.batch_sampler.iters_per_epoch,
        info=info,
        device=device_type,
        categories=dataset.categories,
        start_iter=start_iter,
        progress=progress,
    )
    if loaded is not None:
        trainer.load(loaded, checkpoint)
        if info.is_main:
            print(f"resuming from {checkpoint} (iteration {trainer.iteration} of {max_iter})")
    if overwrite and existing:
        removed = _on_main(lambda: ckpt.remove_run_files(cfg.output_dir), info)
        if info.is_main:
            print(f"starting over: removed the previous run's {', '.join(removed)} from {cfg.output_dir}")
    return trainer
