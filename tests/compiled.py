"""A check shared by the ops' torch.compile tests."""

import torch


def assert_compiled_matches_eager(fn, compiled, x):
    """compiled(x) and its gradient to x equal fn(x)'s (x requires grad)."""
    expected = fn(x)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    actual = compiled(x)
    (grad_actual,) = torch.autograd.grad(actual.square().sum(), x)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(grad_actual, grad_expected)
