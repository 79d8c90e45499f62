"""Linear warm-up, then the learning rate's decay: steps (the paper's: x0.1 after epochs 14 and
17 of 18), or linear or cosine to zero at the schedule's end (``solver.lr_decay``)."""

import bisect
import math

from torch.optim.lr_scheduler import LRScheduler

from msrcnn_fast.engine.config import LR_DECAYS


def warmup_decay_factor(iteration, *, warmup_iters, warmup_factor, decay="step", steps=(), gamma=0.1, max_iter=None):
    """The learning-rate multiplier at `iteration` (0-based): "step" multiplies by `gamma` at each
    of `steps`; "linear" and "cosine" fall from 1 at iteration 0 to 0 at `max_iter`."""
    if decay == "step":
        factor = gamma ** bisect.bisect_right(steps, iteration)
    else:
        progress = min(iteration / max_iter, 1.0)
        factor = 1.0 - progress if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class WarmupDecayLR(LRScheduler):
    """Stepped once per iteration. Its state (for checkpoints) is plain numbers and lists."""

    def __init__(
        self, optimizer, *, warmup_iters, warmup_factor, decay="step", steps=(), gamma=0.1, max_iter=None, last_epoch=-1
    ):
        if decay not in LR_DECAYS:
            raise ValueError(f"WarmupDecayLR: decay must be one of {LR_DECAYS}, got {decay!r}")
        if decay == "step" and list(steps) != sorted(steps):
            raise ValueError(f"WarmupDecayLR: steps must be increasing, got {steps}")
        if decay != "step" and (max_iter is None or max_iter < 1):
            raise ValueError(f"WarmupDecayLR: {decay} decay needs max_iter >= 1, got {max_iter}")
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.decay = decay
        self.steps = list(steps)
        self.gamma = gamma
        self.max_iter = max_iter
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        factor = warmup_decay_factor(
            self.last_epoch,
            warmup_iters=self.warmup_iters,
            warmup_factor=self.warmup_factor,
            decay=self.decay,
            steps=self.steps,
            gamma=self.gamma,
            max_iter=self.max_iter,
        )
        return [base_lr * factor for base_lr in self.base_lrs]
