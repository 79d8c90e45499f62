"""Batches of detection samples: images padded into one tensor whose height and width are
multiples of 32 (the FPN's coarsest stride), with each image's own size kept."""

from dataclasses import dataclass

import torch


@dataclass
class ImageBatch:
    """`tensors` [B, 3, H, W] zero-padded at the bottom and right; `image_sizes` [(h, w)] the
    sizes before padding; `targets` one dict per image (tensors and an `image_id`)."""

    tensors: torch.Tensor
    image_sizes: list
    targets: list

    def to(self, device, non_blocking=False):
        """One copy for all images (pinned memory makes it asynchronous), then the targets."""
        targets = [
            {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in t.items()}
            for t in self.targets
        ]
        return ImageBatch(self.tensors.to(device, non_blocking=non_blocking), list(self.image_sizes), targets)

    def pin_memory(self):  # called by DataLoader(pin_memory=True)
        targets = [{k: v.pin_memory() if torch.is_tensor(v) else v for k, v in t.items()} for t in self.targets]
        return ImageBatch(self.tensors.pin_memory(), self.image_sizes, targets)

    def images(self):
        """The images as a list of views without their padding (the detector's input)."""
        return [self.tensors[i, :, :h, :w] for i, (h, w) in enumerate(self.image_sizes)]

    @property
    def image_ids(self):
        return [t["image_id"] for t in self.targets]


def padded_size(size, size_divisible):
    return -(-size // size_divisible) * size_divisible


def collate_padded(samples, size_divisible=32):
    """DataLoader collate_fn: a list of (image, target) into an ImageBatch."""
    if not samples:
        raise ValueError("collate_padded: got an empty list of samples")
    images, targets = zip(*samples)
    height = padded_size(max(image.shape[-2] for image in images), size_divisible)
    width = padded_size(max(image.shape[-1] for image in images), size_divisible)
    tensors = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for i, image in enumerate(images):
        tensors[i, :, : image.shape[-2], : image.shape[-1]].copy_(image)
    return ImageBatch(tensors, [tuple(image.shape[-2:]) for image in images], list(targets))
