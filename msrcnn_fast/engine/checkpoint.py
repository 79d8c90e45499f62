"""Checkpoints: written atomically, read with torch.load(weights_only=True).

A checkpoint holds only tensors, numbers, strings, lists and dicts (so weights_only loading
accepts it): model, optimizer, lr schedule and grad-scaler states, the number of completed
iterations, every rank's random-number states (engine/rng.py), the config and the categories.
"""

import os
import re
import shutil

import torch

FORMAT = "msrcnn_fast.checkpoint/1"
LAST_CHECKPOINT = "last_checkpoint"  # a text file naming the newest complete checkpoint
FINAL = "model_final.pth"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"  # the merged config of the run
TENSORBOARD = "tensorboard"  # the run's TensorBoard event files (log.tensorboard)
_PERIODIC = re.compile(r"model_\d{7,}\.pth")
# what atomic_write leaves behind when a run is killed mid-write
_TEMPORARY = re.compile(r"\.(model_final\.pth|model_\d{7,}\.pth|last_checkpoint|metrics\.jsonl)\.tmp-\d+")


class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint (corrupt, truncated or foreign)."""


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
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(error).__name__}: {error})") from error
    if isinstance(loaded, dict) and loaded.get("format") == FORMAT:
        return loaded
    if isinstance(loaded, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in loaded.items()):
        return {"model": loaded}
    raise CheckpointError(f"{path}: neither an msrcnn_fast checkpoint nor a model state dict")


def load_model_state(model, state, path):
    """Loads the state dict `state` (read from `path`) into `model`; one written for another
    architecture (another model config, or an older msrcnn_fast) is a CheckpointError naming the
    file and what differs, not torch's RuntimeError."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or reshaped:
        differences = [
            f"{what} {names[:3]}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            for what, names in (("missing", missing), ("unexpected", unexpected), ("other shapes", reshaped))
            if names
        ]
        raise CheckpointError(
            f"{path}: does not fit the model of this config ({'; '.join(differences)}): it was written for another "
            "model configuration or by another version of msrcnn_fast"
        )
    model.load_state_dict(state)


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


def _periodic_checkpoints(output_dir):
    """Names of the periodic checkpoints in output_dir, oldest first."""
    names = [n for n in os.listdir(output_dir) if _PERIODIC.fullmatch(n)]
    return sorted(names, key=lambda n: int(n[6:-4]))


def remove_old_checkpoints(output_dir, keep):
    """Keeps the newest `keep` periodic checkpoints (0 or None: all; model_final.pth is never removed)."""
    if keep is None or keep <= 0:
        return
    for name in _periodic_checkpoints(output_dir)[:-keep]:
        os.remove(os.path.join(output_dir, name))


def run_files(output_dir):
    """The files of a training run that output_dir holds (sorted names): model_final.pth,
    periodic checkpoints (model_NNNNNNN.pth), last_checkpoint and metrics.jsonl. Any one of
    them means a run was started there (a finished one, or one that stopped or was killed),
    so a new run from scratch would destroy it. config.yaml alone does not count: it is
    written once the run is built, and holds no result. [] when output_dir does not exist."""
    if not os.path.exists(output_dir):
        return []
    if not os.path.isdir(output_dir):
        raise NotADirectoryError(f"output_dir {output_dir} exists and is not a folder")
    names = set(os.listdir(output_dir))
    return sorted(n for n in names if n in (FINAL, LAST_CHECKPOINT, METRICS) or _PERIODIC.fullmatch(n))


def remove_run_files(output_dir):
    """Removes a run's files from output_dir (those of run_files, its config.yaml, its
    TensorBoard folder, and the temporary files a killed write left), so a new run starts in a folder that holds nothing
    of the old one; other files (an eval/ folder, a user's notes) stay. Returns their names."""
    removed = [n for n in os.listdir(output_dir) if n == CONFIG or _TEMPORARY.fullmatch(n)]
    # the pointer first: a run killed half-way through this never points at a removed checkpoint
    removed = sorted(set(run_files(output_dir) + removed), key=lambda n: (n != LAST_CHECKPOINT, n))
    for name in removed:
        os.remove(os.path.join(output_dir, name))
    if os.path.isdir(os.path.join(output_dir, TENSORBOARD)):  # the run's TensorBoard events (log.tensorboard)
        shutil.rmtree(os.path.join(output_dir, TENSORBOARD))
        removed.append(TENSORBOARD)
    return removed
