"""Imports point down only, through every layer of the package (DESIGN's layering):

    CLIs -> engine -> evaluation -> data -> integrations -> model -> ops -> kernels, _C

A module may import its own layer and the layers below it, never one above. The package's
``__init__`` (which loads _C and registers the ops) is the one module outside the layers.
"""

import ast
import os

import pytest

from tests.engine.conftest import REPO

PACKAGE = os.path.join(REPO, "msrcnn_fast")
CLIS = ("train", "evaluate", "predict", "demo", "flops", "export")
# Top to bottom; each entry: (layer, the module names that belong to it).
LAYERS = [
    ("CLIs", tuple(f"msrcnn_fast.{name}" for name in CLIS)),
    ("engine", ("msrcnn_fast.engine",)),
    ("evaluation", ("msrcnn_fast.evaluation",)),
    ("data", ("msrcnn_fast.data",)),
    ("integrations", ("msrcnn_fast.integrations",)),
    ("model", ("msrcnn_fast.model",)),
    ("ops", ("msrcnn_fast.ops",)),
    ("kernels", ("msrcnn_fast.kernels", "msrcnn_fast._C")),
]
RANK = {layer: rank for rank, (layer, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    """The layer of a module name of this package (None: the package root or another library)."""
    for layer, prefixes in LAYERS:
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return layer
    return None


def imported_modules(source: str):
    """Every module a source imports, at any depth (``from msrcnn_fast import ops`` -> msrcnn_fast.ops)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            if node.module == "msrcnn_fast":
                yield from (f"msrcnn_fast.{alias.name}" for alias in node.names)


def violations(layer: str, source: str) -> list[str]:
    """The modules ``source`` (a module of ``layer``) imports from a layer above its own."""
    above = []
    for module in imported_modules(source):
        other = layer_of(module)
        if other is not None and RANK[other] < RANK[layer]:
            above.append(f"{module} ({other})")
    return above


def package_files():
    """(module name, path) of every Python file of the package, kernels/ (installed as
    msrcnn_fast.kernels) included."""
    folders = [(PACKAGE, "msrcnn_fast"), (os.path.join(REPO, "kernels"), "msrcnn_fast.kernels")]
    for folder, package in folders:
        for root, _, names in os.walk(folder):
            relative = os.path.relpath(root, folder)
            prefix = package if relative == "." else f"{package}.{relative.replace(os.sep, '.')}"
            for name in sorted(names):
                if name.endswith(".py"):
                    module = prefix if name == "__init__.py" else f"{prefix}.{name[:-3]}"
                    yield module, os.path.join(root, name)


FILES = sorted(package_files())


def test_every_module_of_the_package_is_in_a_layer():
    outside = [module for module, _ in FILES if layer_of(module) is None and module != "msrcnn_fast"]
    assert not outside, f"modules in no layer (add their folder to LAYERS): {outside}"


@pytest.mark.parametrize("layer", [layer for layer, _ in LAYERS])
def test_a_layer_imports_nothing_above_it(layer):
    files = [(module, path) for module, path in FILES if layer_of(module) == layer]
    assert files or layer == "kernels", f"no module in layer {layer}"
    for module, path in files:
        above = violations(layer, open(path, encoding="utf-8").read())
        assert not above, f"{module} ({layer}) imports from above: {above}"


@pytest.mark.parametrize(
    "layer,source,bad",
    [
        ("model", "from msrcnn_fast.integrations.torchvision import add_mask_scoring", True),
        ("model", "def f():\n    import msrcnn_fast.engine.config", True),
        ("ops", "from msrcnn_fast import model", True),
        ("integrations", "from msrcnn_fast.model.rpn import ProposalNetwork\nfrom msrcnn_fast import ops", False),
        ("kernels", "import triton", False),
    ],
)
def test_the_check_finds_an_upward_import(layer, source, bad):
    assert bool(violations(layer, source)) == bad
