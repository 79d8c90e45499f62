"""Linear warm-up then step decay (the paper: x0.1 after epochs 14 and 17 of 18)."""

import bisect

from torch.optim.lr_scheduler import LRScheduler


def warmup_multistep_factor(iteration, *, warmup_iters, warmup_factor, steps, gamma):
    """The learning-rate multiplier at `iteration` (0-based)."""
    factor = gamma ** bisect.bisect_right(steps, iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class WarmupMultiStepLR(LRScheduler):
    """Stepped once per iteration. Its state (for checkpoints) is plain numbers and lists."""

    def __init__(self, optimizer, *, warmup_iters, warmup_factor, steps, gamma, last_epoch=-1):
        if list(steps) != sorted(steps):
            raise ValueError(f"WarmupMultiStepLR: steps must be increasing, got {steps}")
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.steps = list(steps)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        factor = warmup_multistep_factor(
            self.last_epoch,
            warmup_iters=self.warmup_iters,
            warmup_factor=self.warmup_factor,
            steps=self.steps,
            gamma=self.gamma,
        )
        return [base_lr * factor for base_lr in self.base_lrs]
