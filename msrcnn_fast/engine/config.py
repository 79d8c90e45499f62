"""YAML configs with `key=value` overrides, checked against one schema.

A config is DEFAULTS updated by a YAML file, then by dotted overrides (`solver.base_lr=0.01`,
values parsed as YAML). Keys outside the schema are errors (a typo must not be ignored
silently), except under `model`, whose keys are the model factory's keyword arguments and are
checked against its signature instead. Every value is checked against SCHEMA (its type, and its
range where one matters) when the config is loaded, before a CLI builds or writes anything: a
bad value is a ConfigError naming the key, what was expected, what was given and where it came
from (the file or the override).
"""

import copy
import difflib
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


# ---------------------------------------------------------------------------------------------
# The schema: every key's default, type and range.


@dataclass(frozen=True)
class Value:
    """One config value: its default, its type and the range it must lie in.

    `type` is int, float, bool or str. A float accepts an int, and a string that reads as a
    number (PyYAML, a YAML 1.1 parser, reads `1e-3` as the string '1e-3'); an int accepts no
    float (10.5 or 10.0) and no bool. `form` "list" is a list of such values, "one or list"
    either. `optional`: null (None) is allowed.
    """

    default: object
    type: type
    optional: bool = False
    form: str = "one"
    low: float | None = None
    low_open: bool = False  # > low rather than >= low
    high: float | None = None
    high_open: bool = False  # < high rather than <= high
    choices: tuple = ()

    def expected(self):
        """What the value must be, in words ("an integer >= 1", "a number in (0, 1]", ...)."""
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {int: "an integer", float: "a number", bool: "true or false", str: "a non-empty string"}[self.type]
            text += self._range()
        if self.form == "list":
            text = f"a list of {_plural(text)}"
        elif self.form == "one or list":
            text += " or a non-empty list of them"
        return text + (" or null" if self.optional else "")

    def _range(self):
        if self.low is not None and self.high is not None:
            return f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f" {'<' if self.high_open else '<='} {self.high:g}"
        return ""

    def check(self, key, value):
        """`value` as the config keeps it (a numeric string becomes a float); ConfigError otherwise."""
        if value is None and self.optional:
            return None
        if self.form == "one" or (self.form == "one or list" and not isinstance(value, list)):
            checked = self._scalar(value)
            if checked is not _BAD:
                return checked
        elif isinstance(value, list) and (value or self.form == "list"):
            items = [self._scalar(item) for item in value]
            if all(item is not _BAD for item in items):
                return items
        raise ConfigError(f"{key} must be {self.expected()}, got {_shown(value)}")

    def _scalar(self, value):
        if self.type is float:
            value = _as_number(value)
        elif self.type is int:
            value = value if isinstance(value, int) and not isinstance(value, bool) else _BAD
        elif not isinstance(value, self.type) or (self.type is str and not value):
            value = _BAD
        if value is _BAD:
            return _BAD
        if self.choices and value not in self.choices:
            return _BAD
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return _BAD
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return _BAD
        return value


@dataclass(frozen=True)
class Section:
    """A mapping (`fields`: name -> Value) that may be null (None) as a whole, unlike a plain
    dict in the schema. When given, keys it lacks take their defaults; a key whose default is
    REQUIRED must be given."""

    fields: dict


REQUIRED = object()
_BAD = object()
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _as_number(value):
    """A finite int or float, from a number or from a string that reads as one; _BAD otherwise."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _BAD
    return value if math.isfinite(value) else _BAD


def _plural(text):
    for singular, plural in (
        ("a list of", "lists of"),
        ("an integer", "integers"),
        ("a number", "numbers"),
        ("a non-empty string", "strings"),
    ):
        if text.startswith(singular):
            return plural + text[len(singular) :]
    return text


def _shown(value):
    return f"{value!r} ({type(value).__name__})" if isinstance(value, (str, bool, float)) else repr(value)


def integer(default, *, low=None, optional=False, form="one"):
    return Value(default, int, optional=optional, form=form, low=low)


def number(default, *, low=None, above=None, high=None, below=None, optional=False, form="one"):
    """A float; `low`/`high` are inclusive bounds, `above`/`below` exclusive ones."""
    return Value(
        default, float, optional=optional, form=form,
        low=above if above is not None else low, low_open=above is not None,
        high=below if below is not None else high, high_open=below is not None,
    )  # fmt: skip


def boolean(default):
    return Value(default, bool)


def string(default, *, optional=False, choices=()):
    return Value(default, str, optional=optional, choices=tuple(choices))


# solver.lr_decay: the learning rate after the warm-up (engine/lr_schedule.py)
LR_DECAYS = ("step", "linear", "cosine")

SCHEMA = {
    # `name`: a factory of msrcnn_fast.model; every other key is one of its keyword arguments
    # (checked against its signature by check_model_section)
    "model": {"name": string(None, optional=True)},
    "data": {
        "root": string("."),
        # image folder and annotation file of each split, relative to root
        "train": {
            "images": string(None, optional=True),
            "annotations": string(None, optional=True),
            "skip_empty": boolean(True),
        },
        "val": {
            "images": string(None, optional=True),
            "annotations": string(None, optional=True),
            "skip_empty": boolean(False),
        },
        # optional resize in the data pipeline (the model resizes to its own min/max anyway);
        # a list of min sizes: one drawn per image (multi-scale training)
        "train_min_size": integer(None, low=1, optional=True, form="one or list"),
        "train_max_size": integer(None, low=1, optional=True),
        "hflip_prob": number(0.5, low=0, high=1),
        "num_workers": integer(2, low=0),
        # parameters of the generated shapes dataset (python -m msrcnn_fast.data.shapes), if used
        "shapes": Section(
            {
                "train": integer(REQUIRED, low=1),
                "val": integer(REQUIRED, low=1),
                "seed": integer(0),
                "min_size": integer(224, low=1),
                "max_size": integer(320, low=1),
            }
        ),
    },
    "solver": {
        "images_per_batch": integer(16, low=1),  # global: all processes together
        "optimizer": string("sgd", choices=("sgd", "adamw")),
        "base_lr": number(0.02, above=0),
        "momentum": number(0.9, low=0, below=1),  # SGD's; AdamW keeps its betas (0.9, 0.999)
        "weight_decay": number(1.0e-4, low=0),
        "warmup_iters": integer(500, low=0),
        "warmup_factor": number(0.001, above=0, high=1),
        # the schedule in epochs (paper) or in iterations: exactly one of epochs / max_iter;
        # steps strictly increasing; steps past the end never take effect (a shortened run)
        "epochs": number(None, low=1, optional=True),
        "lr_step_epochs": number([], above=0, form="list"),
        "max_iter": integer(None, low=1, optional=True),
        "lr_steps": integer([], low=1, form="list"),
        # after the warm-up: "step" multiplies by gamma at each step; "linear" and "cosine" fall
        # to 0 at the schedule's end (no steps)
        "lr_decay": string("step", choices=LR_DECAYS),
        "gamma": number(0.1, above=0),
        "amp": boolean(True),  # mixed precision on CUDA (ignored on CPU)
        "grad_clip_norm": number(None, above=0, optional=True),  # null: no clipping
        "checkpoint_period": integer(5000, low=0),  # iterations; 0: only the final checkpoint
        "keep_checkpoints": integer(3, low=0),  # newest periodic checkpoints kept; 0: all of them
        "log_period": integer(20, low=1),
        "seed": integer(0),
        "sync_bn": boolean(True),  # SyncBatchNorm under DDP on CUDA
        "find_unused_parameters": boolean(False),
    },
    "test": {"images_per_batch": integer(1, low=1), "max_detections": integer(100, low=1)},
    # COCOeval of pycocotools, or faster-coco-eval's (the same AP; pip install msrcnn_fast[fast-eval])
    "evaluation": {"backend": string("pycocotools", choices=("pycocotools", "faster_coco_eval"))},
    # TensorBoard event files in output_dir/tensorboard next to metrics.jsonl (pip install
    # msrcnn_fast[tensorboard]): losses, learning rate, iteration time, the evaluation's AP
    # table and MaskIoU correlations, and Fig. 5
    "log": {"tensorboard": boolean(False)},
    "device": string("auto", choices=("auto", "cpu", "cuda")),
    "output_dir": string("output"),
}


def _defaults(schema):
    return {
        name: _defaults(spec) if isinstance(spec, dict) else None if isinstance(spec, Section) else spec.default
        for name, spec in schema.items()
    }


DEFAULTS = _defaults(SCHEMA)


# ---------------------------------------------------------------------------------------------
# Loading and merging.


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


def _merge(base, update, source, origins, prefix=""):
    """Updates `base` with `update` (recursively where both hold a mapping); records in
    `origins` which source set each key, so an error can name the file or the override."""
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base and not name.startswith("model."):
            known = ", ".join(sorted(f"{prefix}{k}" for k in base))
            raise ConfigError(f"{source}: unknown key {name!r} (known here: {known})")
        if isinstance(value, dict) and isinstance(base.get(key), dict) and base[key]:
            _merge(base[key], value, source, origins, f"{name}.")
        else:
            base[key] = copy.deepcopy(value)
            origins[name] = source


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
    """DEFAULTS, then the YAML file `path`, then `overrides` (a list of 'key=value'), checked
    against SCHEMA and the model factory's signature (ConfigError on the first bad value)."""
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
    merged, origins = copy.deepcopy(DEFAULTS), {}
    _merge(merged, loaded, path, origins)
    for text in overrides:
        parts, value = parse_override(text)
        _merge(merged, _nest(parts, value), f"override {text!r}", origins)
    cfg = _as_config(merged)
    validate(cfg, path, origins)
    return cfg


# ---------------------------------------------------------------------------------------------
# Checking.


def _origin(key, origins, default):
    """The file or override that set `key` (or the mapping above it)."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        source = origins.get(".".join(parts[:end]))
        if source is not None:
            return source
    return default


def _check_section(schema, values, prefix, where):
    for name, spec in schema.items():
        key = f"{prefix}{name}"
        value = values.get(name)
        if isinstance(spec, dict) or (isinstance(spec, Section) and value is not None):
            if not isinstance(value, dict):
                raise ConfigError(f"{where(key)}: {key} must be a mapping, got {_shown(value)}")
            fields = spec if isinstance(spec, dict) else spec.fields
            if isinstance(spec, Section):
                _fill_section(fields, value, key, where)
            _check_section(fields, value, f"{key}.", where)
        elif isinstance(spec, Value):
            try:
                values[name] = spec.check(key, value)
            except ConfigError as error:
                raise ConfigError(f"{where(key)}: {error}") from None


def _fill_section(fields, value, key, where):
    """Defaults of an optional section's missing keys; errors for unknown or missing required ones."""
    unknown = sorted(set(value) - set(fields))
    if unknown:
        known = ", ".join(f"{key}.{k}" for k in fields)
        raise ConfigError(f"{where(key)}: unknown key '{key}.{unknown[0]}' (known here: {known})")
    for name, spec in fields.items():
        if name not in value:
            if spec.default is REQUIRED:
                raise ConfigError(f"{where(key)}: {key}.{name} must be set ({spec.expected()})")
            value[name] = copy.deepcopy(spec.default)


def validate(cfg, source, origins=None):
    """Checks `cfg` against SCHEMA, then the rules between keys, then the model section;
    numeric strings of float keys become floats in place. `source` (the config file) and
    `origins` ({key: the file or override that set it}) name where a bad value came from."""

    def where(key):
        return _origin(key, origins or {}, source)

    if not isinstance(cfg.get("model"), dict):
        raise ConfigError(f"{where('model')}: model must be a mapping, got {_shown(cfg.get('model'))}")
    _check_section({k: v for k, v in SCHEMA.items() if k != "model"}, cfg, "", where)
    if not cfg.model.get("name"):
        raise ConfigError(f"{source}: model.name is not set (e.g. msrcnn_resnet50_fpn)")
    solver = cfg.solver
    if (solver.epochs is None) == (solver.max_iter is None):
        raise ConfigError(
            f"{source}: set exactly one of solver.epochs (with solver.lr_step_epochs) and solver.max_iter "
            f"(with solver.lr_steps); got epochs={solver.epochs}, max_iter={solver.max_iter}"
        )
    for steps, schedule, other in (("lr_steps", "max_iter", "epochs"), ("lr_step_epochs", "epochs", "max_iter")):
        if solver[steps] and solver[schedule] is None:
            raise ConfigError(
                f"{where('solver.' + steps)}: solver.{steps} goes with solver.{schedule}, but the schedule is "
                f"solver.{other}; got {steps}={solver[steps]}"
            )
        if solver[steps] and solver.lr_decay != "step":
            raise ConfigError(
                f"{where('solver.' + steps)}: solver.{steps} goes with solver.lr_decay: step, but lr_decay is "
                f"{solver.lr_decay} (it decays to 0 at the schedule's end); got {steps}={solver[steps]}"
            )
        if any(b <= a for a, b in zip(solver[steps], solver[steps][1:])):
            raise ConfigError(
                f"{where('solver.' + steps)}: solver.{steps} must be strictly increasing, got {solver[steps]}"
            )
    if (cfg.data.train_min_size is None) != (cfg.data.train_max_size is None):
        raise ConfigError(f"{source}: set both data.train_min_size and data.train_max_size, or neither")
    shapes = cfg.data.shapes
    if shapes is not None and shapes.min_size > shapes.max_size:
        raise ConfigError(
            f"{where('data.shapes')}: data.shapes.min_size ({shapes.min_size}) must be <= data.shapes.max_size "
            f"({shapes.max_size})"
        )
    check_model_section(cfg.model, where)


# ---------------------------------------------------------------------------------------------
# The model section: the factory's keyword arguments.

# Where a factory's **kwargs go, in turn (model/factories.py): msrcnn_resnet18_fpn's to
# msrcnn_resnet_fpn, whose **options go to mask_scoring_rcnn. Their keyword arguments with a
# default are the factory's too.
FORWARDED_TO = ("msrcnn_resnet_fpn", "mask_scoring_rcnn")
SUPPLIED_BY_ENGINE = ("num_classes",)  # from the training set's categories


def model_factory(name):
    """The factory msrcnn_fast.model.<name>; ConfigError if there is none of that name."""
    import msrcnn_fast.model as models  # here: the config must load without importing the model first

    factories = sorted(n for n in models.__all__ if inspect.isfunction(getattr(models, n)))
    if not isinstance(name, str) or name not in factories:
        raise ConfigError(f"model.name: {name!r} is not a model factory (available: {factories})")
    return getattr(models, name)


def factory_keywords(factory):
    """{name: inspect.Parameter} of the keyword arguments `factory` accepts (including those
    its **kwargs forward along FORWARDED_TO); None if it accepts any keyword."""
    import msrcnn_fast.model as models

    chain = [factory] + [getattr(models, name) for name in FORWARDED_TO if getattr(models, name) is not factory]
    keywords = {}
    for depth, function in enumerate(chain):
        parameters = inspect.signature(function, eval_str=True).parameters
        for n, p in parameters.items():
            if p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                continue
            if depth > 0 and p.default is p.empty:
                continue  # a required argument of a target: the caller supplies it (depth, backbone)
            if n not in keywords or keywords[n].annotation is p.empty:
                keywords[n] = p
        if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            return keywords
    return None


def check_model_section(model, where):
    """model.name names a factory; every other key is a keyword argument it takes, of the type
    its annotation gives (numeric strings become floats where a float is expected)."""
    try:
        factory = model_factory(model.name)
    except ConfigError as error:
        raise ConfigError(f"{where('model.name')}: {error}") from None
    keywords = factory_keywords(factory)
    if keywords is None:
        return
    for name, value in list(model.items()):
        if name == "name":
            continue
        key = f"model.{name}"
        if name not in keywords:
            close = difflib.get_close_matches(name, keywords, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(sorted(keywords))
            raise ConfigError(
                f"{where(key)}: unknown key {key!r}: {model.name} takes no {name!r} ({hint}it takes: {known})"
            )
        annotation = keywords[name].annotation
        if annotation is inspect.Parameter.empty:
            continue
        checked = _annotated(value, annotation)
        if checked is _BAD:
            raise ConfigError(f"{where(key)}: {key} must be {_describe(annotation)}, got {_shown(value)}")
        model[name] = checked
    missing = [
        n for n, p in keywords.items()
        if p.default is p.empty and n not in model and n not in SUPPLIED_BY_ENGINE
    ]  # fmt: skip
    if missing:
        raise ConfigError(f"{where('model')}: model.{missing[0]} must be set ({model.name} requires it)")


def _annotated(value, annotation):
    """`value` if it has the type `annotation` describes (a list stands for a tuple), a float
    for a numeric string where a float is expected; _BAD otherwise. Unknown annotations pass."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return None if value is None else _BAD
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            checked = _annotated(value, arg)
            if checked is not _BAD:
                return checked
        return _BAD
    if annotation is float:
        return _as_number(value)
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if annotation in (bool, str):
        return value if isinstance(value, annotation) else _BAD
    if origin in (tuple, list) or annotation in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _BAD
        if not args:
            return value
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                return _BAD
            items = [_annotated(v, a) for v, a in zip(value, args)]
        else:
            items = [_annotated(v, args[0]) for v in value]
        return _BAD if any(item is _BAD for item in items) else type(value)(items)
    return value


def _describe(annotation):
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    simple = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if annotation in simple:
        return simple[annotation]
    if origin in (tuple, list):
        if not args:
            return "a list"
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(set(args)) == 1:
                return f"a list of {len(args)} {_plural(_describe(args[0]))}"
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_plural(_describe(args[0]))}"
    return getattr(annotation, "__name__", str(annotation))
