"""The errors the torchvision drop-ins raise: ours, and torchvision's type too.

The kernels check their arguments and raise ``ValueError`` or ``TypeError`` with a message
that names the argument. torchvision's ops raise ``RuntimeError`` for the same inputs (their
C++ checks), and ``AssertionError`` for RoI boxes of the wrong shape or kind
(``torch._assert``). So that code written around either library catches ours, the drop-ins
(``roi_align``, ``RoIAlign``, ``MultiScaleRoIAlign``, ``nms``, ``batched_nms``) raise
subclasses of both: ``except ValueError`` and ``except RuntimeError`` both catch an
:class:`ArgumentValueError`.

Under ``torch.jit.script`` every error is a ``torch.jit.Error`` carrying the same message, as
for torchvision's scripted ops.
"""

import torch

__all__ = ["ArgumentTypeError", "ArgumentValueError", "BoxesTypeError", "BoxesValueError", "call_dropin"]


class ArgumentValueError(ValueError, RuntimeError):
    """A bad argument value (shape, size, device, range); torchvision raises RuntimeError."""


class ArgumentTypeError(TypeError, RuntimeError):
    """An argument of the wrong dtype; torchvision raises RuntimeError."""


class BoxesValueError(ValueError, AssertionError):
    """RoI boxes of the wrong shape; torchvision's roi ops assert (AssertionError)."""


class BoxesTypeError(TypeError, AssertionError):
    """RoI boxes that are neither a Tensor nor a list of Tensors; torchvision asserts."""


_AS_TORCHVISION = ((ValueError, ArgumentValueError), (TypeError, ArgumentTypeError))


def call_dropin(op, *args):
    """``op(*args)`` (a ``torch.ops.msrcnn`` kernel), its ValueError or TypeError raised again
    as the subclass that is also torchvision's RuntimeError, with the same message."""
    if torch.compiler.is_compiling():
        return op(*args)
    try:
        return op(*args)
    except (ValueError, TypeError) as error:
        if isinstance(error, RuntimeError):
            raise
        for ours, both in _AS_TORCHVISION:
            if isinstance(error, ours):
                raise both(str(error)).with_traceback(error.__traceback__) from None
        raise
