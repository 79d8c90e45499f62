"""Imports point down only: CLIs -> engine -> evaluation -> data (-> model -> ops)."""

import ast
import os

import pytest

from tests.engine.conftest import REPO

PACKAGE = os.path.join(REPO, "msrcnn_fast")
CLIS = {"msrcnn_fast.train", "msrcnn_fast.evaluate", "msrcnn_fast.predict", "msrcnn_fast.demo"}
FORBIDDEN = {
    "data": {"msrcnn_fast.engine", "msrcnn_fast.evaluation", *CLIS},
    "evaluation": {"msrcnn_fast.engine", *CLIS},
    "engine": CLIS,
}


def imported_modules(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    folder = os.path.join(PACKAGE, layer)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            for module in imported_modules(os.path.join(folder, name)):
                above = [f for f in FORBIDDEN[layer] if module == f or module.startswith(f + ".")]
                assert not above, f"msrcnn_fast/{layer}/{name} imports {module}"
