"""Batches of detection samples: each image kept at its own size, with its target.

The detector resizes every image and pads the batch itself (model/transform.py), so padding
here would only cost memory: one 4000x3000 photo would make every image of its batch a
4000x3000 tensor (16 images: 2.3 GB, per batch the loader prefetches).
"""

from dataclasses import dataclass

import torch


@dataclass
class ImageBatch:
    """`tensors` the images, each a [3, H, W] tensor at its own size; `targets` one dict per
    image (tensors and an `image_id`)."""

    tensors: list
    targets: list

    def to(self, device, non_blocking=False):
        """The images and the targets' tensors on `device` (asynchronously from pinned memory)."""
        targets = [
            {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in t.items()}
            for t in self.targets
        ]
        return ImageBatch([image.to(device, non_blocking=non_blocking) for image in self.tensors], targets)

    def pin_memory(self):  # called by DataLoader(pin_memory=True)
        targets = [{k: v.pin_memory() if torch.is_tensor(v) else v for k, v in t.items()} for t in self.targets]
        return ImageBatch([image.pin_memory() for image in self.tensors], targets)

    def images(self):
        """The images as a list (the detector's input)."""
        return list(self.tensors)

    @property
    def image_sizes(self):
        return [tuple(image.shape[-2:]) for image in self.tensors]

    @property
    def image_ids(self):
        return [t["image_id"] for t in self.targets]


def collate_images(samples):
    """DataLoader collate_fn: a list of (image, target) into an ImageBatch."""
    if not samples:
        raise ValueError("collate_images: got an empty list of samples")
    images, targets = zip(*samples)
    return ImageBatch(list(images), list(targets))
