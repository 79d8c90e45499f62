"""Checkpoints: written atomically, read with torch.load(weights_only=True).

A checkpoint holds only tensors, numbers, strings, lists and dicts (so weights_only loading
accepts it): model, optimizer, lr schedule and grad-scaler states, the number of completed
iterations, every rank's random-number states (engine/rng.py), the config and the categories.
"""

import os

import torch

FORMAT = "msrcnn_fast.checkpoint/1"
LAST_CHECKPOINT = "last_checkpoint"  # a text file naming the newest complete checkpoint
FINAL = "model_final.pth"


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Calls write(file) on a temporary file beside `path`, then renames it to `path`: a reader
    (or a run killed mid-write) sees the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    _fsync_dir(folder)


def save_checkpoint(path, checkpoint):
    checkpoint = {"format": FORMAT, **checkpoint}
    atomic_write(path, lambda file: torch.save(checkpoint, file))


def load_checkpoint(path, map_location="cpu"):
    """A checkpoint written by save_checkpoint, or a bare model state dict (as {"model": ...})."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint does not exist")
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path}: not a loadable checkpoint ({type(error).__name__}: {error})") from error
    if isinstance(loaded, dict) and loaded.get("format") == FORMAT:
        return loaded
    if isinstance(loaded, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in loaded.items()):
        return {"model": loaded}
    raise ValueError(f"{path}: neither an msrcnn_fast checkpoint nor a model state dict")


def write_last_checkpoint(output_dir, name):
    atomic_write(os.path.join(output_dir, LAST_CHECKPOINT), lambda file: file.write(name.encode() + b"\n"))


def find_last_checkpoint(output_dir):
    """The path named by output_dir/last_checkpoint, or None when there is none."""
    pointer = os.path.join(output_dir, LAST_CHECKPOINT)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as file:
        name = file.read().strip()
    path = os.path.join(output_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{pointer} names {name}, which does not exist")
    return path


def periodic_checkpoint_name(iteration):
    return f"model_{iteration:07d}.pth"


def remove_old_checkpoints(output_dir, keep):
    """Keeps the newest `keep` periodic checkpoints (model_final.pth is never removed)."""
    if keep is None or keep <= 0:
        return
    names = sorted(n for n in os.listdir(output_dir) if n.startswith("model_") and n[6:13].isdigit())
    for name in names[:-keep]:
        os.remove(os.path.join(output_dir, name))
