"""RoI boxes in torchvision's two formats: Tensor[K, 5] or a list of Tensor[L, 4]."""

import torch
from torch import Tensor

Boxes = Tensor | list[Tensor] | tuple[Tensor, ...]


def as_rois(boxes: Boxes, like: Tensor) -> Tensor:
    """Tensor[K, 5] (batch index, x1, y1, x2, y2) from either format.

    A list holds one Tensor[L, 4] per image; an empty list gives no RoIs. Shapes are checked
    here so that the error names the argument the caller passed; so is (in eager mode) a list
    with boxes for more images than ``like`` (the input, [N, C, H, W]) has.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(
                f"boxes: expected a Tensor[K, 5] or a list of Tensor[L, 4], got shape {tuple(boxes.shape)}"
            )
        return boxes
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes: expected a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if len(boxes) == 0:
        return like.new_zeros((0, 5))
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.dim() != 2 or b.size(1) != 4:
            shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise ValueError(f"boxes[{i}]: expected a Tensor[L, 4], got {shape}")
    if like.dim() == 4 and not torch.compiler.is_compiling():
        batch = like.size(0)
        for i in range(batch, len(boxes)):
            if boxes[i].size(0) > 0:
                raise ValueError(
                    f"boxes: expected at most one list per image of the input ({batch}), got {len(boxes)} "
                    f"with boxes in boxes[{i}]"
                )
    ids = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)], dim=0)
    return torch.cat([ids, torch.cat(list(boxes), dim=0)], dim=1)


def pair(size: int | tuple[int, int] | list[int], name: str = "output_size") -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"{name}: expected an int or a pair of ints, got {size}")
    return size[0], size[1]


def is_channels_last(features: list[Tensor]) -> bool:
    """The layout the kernels use: NHWC when every map is channels-last (one strictly)."""
    if not all(f.dim() == 4 and f.is_contiguous(memory_format=torch.channels_last) for f in features):
        return False
    return any(not f.is_contiguous() for f in features)
