"""YAML configs with `key=value` overrides.

A config is DEFAULTS updated by a YAML file, then by dotted overrides (`solver.base_lr=0.01`,
values parsed as YAML). Keys outside DEFAULTS are errors (a typo must not be ignored silently),
except under `model`, whose keys are the model factory's keyword arguments.
"""

import copy
import os

import yaml

DEFAULTS = {
    "model": {"name": None},
    "data": {
        "root": ".",
        # image folder and annotation file of each split, relative to root
        "train": {"images": None, "annotations": None, "skip_empty": True},
        "val": {"images": None, "annotations": None, "skip_empty": False},
        # optional resize in the data pipeline (the model resizes to its own min/max anyway)
        "train_min_size": None,
        "train_max_size": None,
        "hflip_prob": 0.5,
        "num_workers": 2,
        # parameters of the generated shapes dataset (python -m msrcnn_fast.data.shapes), if used
        "shapes": None,
    },
    "solver": {
        "images_per_batch": 16,  # global: all processes together
        "base_lr": 0.02,
        "momentum": 0.9,
        "weight_decay": 1.0e-4,
        "warmup_iters": 500,
        "warmup_factor": 0.001,
        # the schedule in epochs (paper) or in iterations: exactly one of epochs / max_iter
        "epochs": None,
        "lr_step_epochs": [],
        "max_iter": None,
        "lr_steps": [],
        "gamma": 0.1,
        "amp": True,  # mixed precision on CUDA (ignored on CPU)
        "grad_clip_norm": None,
        "checkpoint_period": 5000,
        "keep_checkpoints": 3,
        "log_period": 20,
        "seed": 0,
        "sync_bn": True,  # SyncBatchNorm under DDP on CUDA
        "find_unused_parameters": False,
    },
    "test": {"images_per_batch": 1, "max_detections": 100},
    "device": "auto",
    "output_dir": "output",
}


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class Config(dict):
    """A dict whose keys also read as attributes (`cfg.solver.base_lr`)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


def _as_config(value):
    if isinstance(value, dict):
        return Config({k: _as_config(v) for k, v in value.items()})
    return value


def _merge(base, update, source, prefix=""):
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base and not name.startswith("model."):
            known = ", ".join(sorted(f"{prefix}{k}" for k in base))
            raise ConfigError(f"{source}: unknown key {name!r} (known here: {known})")
        if isinstance(value, dict) and isinstance(base.get(key), dict) and base[key]:
            _merge(base[key], value, source, f"{name}.")
        else:
            base[key] = copy.deepcopy(value)


def parse_override(text):
    """'solver.base_lr=0.01' -> (['solver', 'base_lr'], 0.01)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. solver.base_lr=0.01")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: {key!r} is not a dotted key")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value {raw!r} is not valid YAML: {error}") from error
    return key.split("."), value


def _nest(parts, value):
    nested = value
    for part in reversed(parts):
        nested = {part: nested}
    return nested


def load_config(path, overrides=()):
    """DEFAULTS, then the YAML file `path`, then `overrides` (a list of 'key=value')."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file does not exist")
    with open(path, encoding="utf-8") as file:
        try:
            loaded = yaml.load(file, Loader=_UniqueKeyLoader) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from error
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(loaded).__name__}")
    merged = copy.deepcopy(DEFAULTS)
    _merge(merged, loaded, path)
    for text in overrides:
        parts, value = parse_override(text)
        _merge(merged, _nest(parts, value), f"override {text!r}")
    cfg = _as_config(merged)
    validate(cfg, path)
    return cfg


def validate(cfg, source):
    if not cfg.model.get("name"):
        raise ConfigError(f"{source}: model.name is not set (e.g. msrcnn_resnet50_fpn)")
    solver = cfg.solver
    if (solver.epochs is None) == (solver.max_iter is None):
        raise ConfigError(
            f"{source}: set exactly one of solver.epochs (with solver.lr_step_epochs) and solver.max_iter "
            f"(with solver.lr_steps); got epochs={solver.epochs}, max_iter={solver.max_iter}"
        )
    if solver.images_per_batch < 1:
        raise ConfigError(f"{source}: solver.images_per_batch must be >= 1, got {solver.images_per_batch}")
    if (cfg.data.train_min_size is None) != (cfg.data.train_max_size is None):
        raise ConfigError(f"{source}: set both data.train_min_size and data.train_max_size, or neither")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{source}: device must be auto, cpu or cuda, got {cfg.device!r}")
