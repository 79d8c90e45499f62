"""RoI boxes in torchvision's two formats: Tensor[K, 5] or a list of Tensor[L, 4].

Scriptable (``torch.jit.script``): the drop-ins that call these are.
"""

import torch
from torch import Tensor

from msrcnn_fast.ops.errors import ArgumentValueError, BoxesTypeError, BoxesValueError

# A list also stands for a tuple of Tensors in eager mode (TorchScript has no variadic tuples).
Boxes = Tensor | list[Tensor]


def shape_of(tensor: Tensor) -> str:
    """A tensor's shape as Python prints a tuple, "(3, 4)", in eager mode and in TorchScript."""
    sizes = [str(s) for s in tensor.shape]
    return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"


def as_rois(boxes: Boxes, like: Tensor) -> Tensor:
    """Tensor[K, 5] (batch index, x1, y1, x2, y2) from either format.

    A list holds one Tensor[L, 4] per image; an empty list gives no RoIs. Shapes are checked
    here so that the error names the argument the caller passed (a :class:`BoxesValueError`,
    also torchvision's AssertionError); so is (in eager mode) a list with boxes for more
    images than ``like`` (the input, [N, C, H, W]) has.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise BoxesValueError(
                "boxes: expected a Tensor[K, 5] or a list of Tensor[L, 4], got shape " + shape_of(boxes)
            )
        return boxes
    if not torch.jit.is_scripting():
        if not isinstance(boxes, (list, tuple)):
            raise BoxesTypeError(
                f"boxes: expected a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}"
            )
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor):
                raise BoxesTypeError(f"boxes[{i}]: expected a Tensor[L, 4], got {type(b).__name__}")
    if len(boxes) == 0:
        return like.new_zeros((0, 5))
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.size(1) != 4:
            raise BoxesValueError("boxes[" + str(i) + "]: expected a Tensor[L, 4], got " + shape_of(b))
    if not torch.jit.is_scripting():
        if like.dim() == 4 and not torch.compiler.is_compiling():
            batch = like.size(0)
            for i in range(batch, len(boxes)):
                if boxes[i].size(0) > 0:
                    raise ArgumentValueError(
                        f"boxes: expected at most one list per image of the input ({batch}), got {len(boxes)} "
                        f"with boxes in boxes[{i}]"
                    )
    ids = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)], dim=0)
    return torch.cat([ids, torch.cat(boxes, dim=0)], dim=1)


def pair(size: list[int], name: str = "output_size") -> tuple[int, int]:
    """(height, width) from an int (eager mode), or a sequence of one or two ints."""
    if not torch.jit.is_scripting():
        if isinstance(size, int):
            return size, size
        size = list(size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ArgumentValueError(name + ": expected an int or a pair of ints, got " + str(size))
    return size[0], size[1]


def is_channels_last(features: list[Tensor]) -> bool:
    """The layout the kernels use: NHWC when every map is channels-last (one strictly)."""
    if not all(f.dim() == 4 and f.is_contiguous(memory_format=torch.channels_last) for f in features):
        return False
    return any(not f.is_contiguous() for f in features)
