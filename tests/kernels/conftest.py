import pytest


@pytest.fixture
def interpreter(monkeypatch):
    """Runs the msrcnn Triton kernels on CPU tensors under the Triton interpreter.

    TRITON_INTERPRET is read at call time by msrcnn_fast.kernels (which keeps an interpreted
    twin of its kernels), so it can be switched on per test after msrcnn_fast was imported.
    Under the interpreter autotuning is off: each kernel runs default_config(interpret=True)
    unless a test passes a config.
    """
    monkeypatch.setenv("TRITON_INTERPRET", "1")
