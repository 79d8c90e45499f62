"""Process-group set-up for `torchrun --nproc_per_node N` (gloo on CPU, nccl on CUDA) and the
few collectives the trainer needs. A single process (no WORLD_SIZE) needs no process group."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def init_distributed(device_type):
    """Joins the process group torchrun describes in the environment; returns this process's
    ProcessInfo (a single process when WORLD_SIZE is absent or 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return ProcessInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(values, info):
    """{name: scalar tensor} averaged over all processes (floats, the same on every rank)."""
    names = sorted(values)
    stacked = torch.stack([values[name].detach().float() for name in names])
    if info.distributed:
        dist.all_reduce(stacked)
        stacked /= info.world_size
    return dict(zip(names, stacked.tolist()))


def gather_objects(value, info):
    """Every rank's `value`, in rank order (on every rank)."""
    if not info.distributed:
        return [value]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(info):
    if info.distributed:
        dist.barrier()
