"""Detection transforms on `(image [3, H, W] float, target dict)` pairs.

Each takes a `generator` (torch.Generator or None for the global one) so that a training
sample's augmentation is a function of its seed alone (see data/sampler.py).
"""

import torch
import torch.nn.functional as F


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target, generator=None):
        for transform in self.transforms:
            image, target = transform(image, target, generator=generator)
        return image, target

    def __repr__(self):
        return f"Compose({self.transforms})"


def resized_size(height, width, min_size, max_size):
    """(height, width) with the short side at min_size unless that puts the long side over max_size
    (then the long side at max_size): the rule of torchvision's GeneralizedRCNNTransform. No side
    becomes 0 pixels (a 1x200 strip at max_size 64 would)."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class ResizeMinMax:
    """Resizes the short side to `min_size` (one drawn at random if a sequence: multi-scale
    training), the long side at most `max_size`. Images bilinear, masks nearest, boxes scaled."""

    def __init__(self, *, min_size, max_size):
        self.min_sizes = tuple(min_size) if isinstance(min_size, (list, tuple)) else (min_size,)
        self.max_size = max_size

    def __call__(self, image, target, generator=None):
        if len(self.min_sizes) == 1:
            min_size = self.min_sizes[0]
        else:
            min_size = self.min_sizes[int(torch.randint(len(self.min_sizes), (1,), generator=generator))]
        height, width = image.shape[-2:]
        new_height, new_width = resized_size(height, width, min_size, self.max_size)
        if (new_height, new_width) == (height, width):
            return image, target
        image = F.interpolate(image[None], size=(new_height, new_width), mode="bilinear", align_corners=False)[0]
        target = dict(target)
        if "boxes" in target:
            scale = torch.tensor([new_width / width, new_height / height] * 2, dtype=target["boxes"].dtype)
            target["boxes"] = target["boxes"] * scale
        if "masks" in target and target["masks"].shape[0]:
            target["masks"] = F.interpolate(
                target["masks"][None].float(), size=(new_height, new_width), mode="nearest"
            )[0].to(target["masks"].dtype)
        elif "masks" in target:
            target["masks"] = target["masks"].new_zeros((0, new_height, new_width))
        return image, target

    def __repr__(self):
        return f"ResizeMinMax(min_size={self.min_sizes}, max_size={self.max_size})"


class RandomHorizontalFlip:
    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, image, target, generator=None):
        if self.prob <= 0 or float(torch.rand((), generator=generator)) >= self.prob:
            return image, target
        width = image.shape[-1]
        target = dict(target)
        if "boxes" in target:
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
            target["boxes"] = boxes
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        return image.flip(-1), target

    def __repr__(self):
        return f"RandomHorizontalFlip(prob={self.prob})"
