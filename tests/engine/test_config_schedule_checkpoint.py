import argparse
import math
import os

import pytest
import torch

from msrcnn_fast.engine import checkpoint as ckpt
from msrcnn_fast.engine.build import build_optimizer
from msrcnn_fast.engine.config import ConfigError, load_config
from msrcnn_fast.engine.lr_schedule import WarmupDecayLR, warmup_decay_factor
from msrcnn_fast.engine.rng import capture_rng_state, restore_rng_state
from tests.engine.conftest import write_config

MINIMAL = "model: {name: msrcnn_resnet50_fpn}\nsolver: {max_iter: 10}\n"


def test_defaults_file_and_overrides_in_that_order(tmp_path):
    cfg = load_config(
        write_config(tmp_path, MINIMAL + "data: {num_workers: 4}\n"), ["solver.base_lr=0.01", "data.num_workers=1"]
    )
    assert cfg.solver.max_iter == 10 and cfg.solver.base_lr == 0.01 and cfg.data.num_workers == 1
    assert cfg.solver.momentum == 0.9 and cfg.solver.weight_decay == 1e-4  # defaults
    assert cfg.to_dict()["solver"]["max_iter"] == 10


def test_model_keys_are_free_other_unknown_keys_are_errors(tmp_path):
    cfg = load_config(write_config(tmp_path, MINIMAL), ["model.mask_conv_dim=64", "model.soft_nms=true"])
    assert cfg.model.mask_conv_dim == 64 and cfg.model.soft_nms is True
    with pytest.raises(
        ConfigError, match=r"override 'solver.bse_lr=1': unknown key 'solver.bse_lr' \(known here: .*solver.base_lr"
    ):
        load_config(write_config(tmp_path, MINIMAL), ["solver.bse_lr=1"])
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'trainer'"):
        load_config(write_config(tmp_path, MINIMAL + "trainer: {}\n"))


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("model: {}\nsolver: {max_iter: 1}\n", [], r"model.name is not set"),
        ("model: {name: m}\n", [], r"set exactly one of solver.epochs .* got epochs=None, max_iter=None"),
        ("model: {name: m}\nsolver: {max_iter: 9, epochs: 18}\n", [], r"set exactly one of solver.epochs"),
        (MINIMAL + "solver: {epochs: 18}\n", [], r"duplicate key 'solver' \(line 3\)"),
        (MINIMAL, ["solver.base_lr"], r"expected key=value"),
        (MINIMAL, ["solver..x=1"], r"is not a dotted key"),
        (MINIMAL, ["device=tpu"], r"override 'device=tpu': device must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
        (MINIMAL, ["data.train_min_size=600"], r"set both data.train_min_size and data.train_max_size"),
        ("[1, 2]", [], r"the top level must be a mapping, got list"),
        ("model: {name: [}", [], r"not valid YAML"),
    ],
)
def test_bad_configs_are_named(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, text), overrides)


def test_a_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: config file does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_the_optimizer_is_sgd_or_adamw(tmp_path):
    model = torch.nn.Linear(3, 2)
    sgd = build_optimizer(load_config(write_config(tmp_path, MINIMAL)), model)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.9 and sgd.defaults["lr"] == 0.02
    overrides = ["solver.optimizer=adamw", "solver.base_lr=0.001", "solver.weight_decay=0.05"]
    adamw = build_optimizer(load_config(write_config(tmp_path, MINIMAL), overrides), model)
    assert type(adamw) is torch.optim.AdamW
    assert adamw.defaults["lr"] == 0.001 and adamw.defaults["weight_decay"] == 0.05
    with pytest.raises(ConfigError, match=r"solver.optimizer.*'adam'"):
        load_config(write_config(tmp_path, MINIMAL), ["solver.optimizer=adam"])


def test_warmup_is_linear_then_steps_multiply_by_gamma():
    factor = lambda i: warmup_decay_factor(i, warmup_iters=10, warmup_factor=0.1, steps=[20, 30], gamma=0.1)  # noqa: E731
    assert [factor(i) for i in (0, 5, 10, 19)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    assert [factor(i) for i in (20, 29, 30, 100)] == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_linear_and_cosine_decay_fall_to_zero_at_max_iter_after_the_warmup():
    def factor(i, decay):
        return warmup_decay_factor(i, warmup_iters=10, warmup_factor=0.1, decay=decay, max_iter=100)

    # in the warm-up the decay's factor is multiplied by the warm-up's (at 5: 0.55)
    assert [factor(i, "linear") for i in (0, 5, 10, 50, 75, 100, 120)] == pytest.approx(
        [0.1, 0.55 * 0.95, 0.9, 0.5, 0.25, 0.0, 0.0]
    )
    assert [factor(i, "cosine") for i in (0, 10, 50, 100, 120)] == pytest.approx(
        [0.1, (1 + math.cos(math.pi * 0.1)) / 2, 0.5, 0.0, 0.0], abs=1e-12
    )
    assert factor(25, "cosine") == pytest.approx((1 + math.sqrt(0.5)) / 2)


def test_lr_decay_is_checked_against_the_steps(tmp_path):
    config = write_config(tmp_path, MINIMAL)
    assert load_config(config).solver.lr_decay == "step"
    assert load_config(config, ["solver.lr_decay=cosine", "solver.lr_steps=[]"]).solver.lr_decay == "cosine"
    with pytest.raises(ConfigError, match=r"solver.lr_steps.*lr_decay: step.*linear"):
        load_config(config, ["solver.lr_decay=linear", "solver.lr_steps=[5]"])
    with pytest.raises(ConfigError, match=r"solver.lr_decay.*'exp'"):
        load_config(config, ["solver.lr_decay=exp"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    with pytest.raises(ValueError, match="max_iter"):
        WarmupDecayLR(optimizer, warmup_iters=0, warmup_factor=1.0, decay="linear")


@pytest.mark.parametrize("decay", ["step", "cosine"])
def test_the_schedule_state_restores_exactly(decay):
    def make():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
        steps = [7] if decay == "step" else []
        schedule = WarmupDecayLR(
            optimizer, warmup_iters=5, warmup_factor=0.001, decay=decay, steps=steps, gamma=0.1, max_iter=12
        )
        return optimizer, schedule

    optimizer, schedule = make()
    for _ in range(6):
        optimizer.step()
        schedule.step()
    state = schedule.state_dict()
    restored_optimizer, restored = make()
    restored.load_state_dict(state)
    restored_optimizer.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]
    for _ in range(3):
        schedule.step()
        restored.step()
        assert restored.get_last_lr() == schedule.get_last_lr()
    expected = 0.002 if decay == "step" else 0.02 * (1 + math.cos(math.pi * 9 / 12)) / 2
    assert schedule.get_last_lr()[0] == pytest.approx(expected)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "model.pth"
    ckpt.atomic_write(path, lambda file: file.write(b"old"))

    def failing(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.atomic_write(path, failing)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.pth"]


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    ckpt.save_checkpoint(tmp_path / "c.pth", {"rng": [capture_rng_state()]})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(ckpt.load_checkpoint(tmp_path / "c.pth")["rng"][0])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_loading_refuses_foreign_files_and_accepts_bare_state_dicts(tmp_path):
    torch.save({"weight": torch.ones(2)}, tmp_path / "bare.pth")
    assert torch.equal(ckpt.load_checkpoint(tmp_path / "bare.pth")["model"]["weight"], torch.ones(2))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk.pth: not a loadable checkpoint"):
        ckpt.load_checkpoint(tmp_path / "junk.pth")
    torch.save({"weight": [1, 2]}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth: neither an msrcnn_fast checkpoint nor a model state dict"):
        ckpt.load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match=r"none.pth: checkpoint does not exist"):
        ckpt.load_checkpoint(tmp_path / "none.pth")


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path):
    torch.save({"format": ckpt.FORMAT, "payload": argparse.Namespace(x=1)}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        ckpt.load_checkpoint(tmp_path / "evil.pth")


def test_the_last_checkpoint_pointer(tmp_path):
    assert ckpt.find_last_checkpoint(tmp_path) is None
    (tmp_path / "model_0000005.pth").write_bytes(b"x")
    ckpt.write_last_checkpoint(tmp_path, "model_0000005.pth")
    assert ckpt.find_last_checkpoint(tmp_path) == str(tmp_path / "model_0000005.pth")
    ckpt.write_last_checkpoint(tmp_path, "model_0000010.pth")
    with pytest.raises(FileNotFoundError, match="names model_0000010.pth, which does not exist"):
        ckpt.find_last_checkpoint(tmp_path)
