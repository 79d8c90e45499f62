"""The training data order: a pure function of (seed, iteration), so that a resumed run sees
exactly the batches an uninterrupted run would have seen, and DDP ranks split one global batch.

Epoch e is a permutation of the dataset drawn from (seed, e), wrapped around to a whole number
of global batches. Iteration i of the run is global batch i of that sequence; rank r takes
images [r * B, (r + 1) * B) of it (B images per rank). Each item is (dataset index, sample
seed); the sample seed drives that image's random transforms.
"""

import math

import numpy as np
import torch


def sample_seed(seed, epoch, position):
    """A 63-bit seed for the augmentation of the image at `position` of epoch `epoch`."""
    state = np.random.SeedSequence([seed, epoch, position]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


class TrainingBatchSampler(torch.utils.data.Sampler):
    """Endless batch sampler: yields this rank's batches from iteration `start_iter` on."""

    def __init__(self, *, dataset_size, images_per_rank, world_size=1, rank=0, seed=0, start_iter=0):
        if dataset_size <= 0:
            raise ValueError(f"TrainingBatchSampler: the training set is empty (dataset_size={dataset_size})")
        if not 0 <= rank < world_size:
            raise ValueError(f"TrainingBatchSampler: rank {rank} is not in [0, world_size={world_size})")
        self.dataset_size = dataset_size
        self.images_per_rank = images_per_rank
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.start_iter = start_iter

    @property
    def global_batch_size(self):
        return self.images_per_rank * self.world_size

    @property
    def iters_per_epoch(self):
        return math.ceil(self.dataset_size / self.global_batch_size)

    def epoch_order(self, epoch):
        """The dataset indices of epoch `epoch`, wrapped to iters_per_epoch global batches."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.dataset_size, generator=generator)
        needed = self.iters_per_epoch * self.global_batch_size
        return order.repeat(math.ceil(needed / self.dataset_size))[:needed].tolist()

    def _rank_items(self, order, epoch, step):
        start = step * self.global_batch_size + self.rank * self.images_per_rank
        return [(order[p], sample_seed(self.seed, epoch, p)) for p in range(start, start + self.images_per_rank)]

    def __iter__(self):
        iteration = self.start_iter
        epoch, order = None, None
        while True:
            current_epoch, step = divmod(iteration, self.iters_per_epoch)
            if current_epoch != epoch:
                epoch, order = current_epoch, self.epoch_order(current_epoch)
            yield self._rank_items(order, epoch, step)
            iteration += 1
