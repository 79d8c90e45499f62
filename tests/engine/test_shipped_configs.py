"""The configs under configs/ load and pass every check, as a user's first command would."""

import glob
import os

import pytest

from msrcnn_fast.engine.config import load_config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.yaml"))))
def test_each_shipped_config_loads(name):
    cfg = load_config(os.path.join(CONFIGS, name))
    assert cfg.model.name and cfg.output_dir


def test_the_long_run_is_the_demo_on_a_longer_schedule():
    demo, long = (load_config(os.path.join(CONFIGS, f"shapes_{n}.yaml")) for n in ("demo", "long"))
    assert long.model.to_dict() == demo.model.to_dict() and long.data.to_dict() == demo.data.to_dict()
    # 6000 against the demo's 2800: the accuracy-against-iterations table of the README.
    assert long.solver.max_iter >= 2 * demo.solver.max_iter and long.output_dir != demo.output_dir
