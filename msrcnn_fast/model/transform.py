"""Image normalisation, resizing and batching (torchvision's), with masks pasted by our kernel."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from msrcnn_fast import ops

__all__ = ["DetectionTransform"]


class DetectionTransform(GeneralizedRCNNTransform):
    """torchvision's GeneralizedRCNNTransform whose postprocess pastes the RoI mask
    probabilities into the original image with msrcnn_fast.ops.paste_masks, and whose batch
    is channels-last.

    Output masks are bool [K, 1, H, W]: the probability thresholded at `mask_threshold` (0.5),
    as COCO evaluation and drawing use them (torchvision returns the float probabilities).

    Resizing is torchvision's (short side to min_size, long side at most max_size, sizes
    rounded down), except that no side becomes 0 pixels: torchvision's fails on an image much
    longer than wide (1x200 at min_size 64, max_size 64), whose short side rounds down to 0.
    """

    def __init__(
        self,
        min_size: int | tuple[int, ...],
        max_size: int,
        image_mean: list[float],
        image_std: list[float],
        *,
        size_divisible: int = 32,
        fixed_size: tuple[int, int] | None = None,
        channels_last: bool = True,
        mask_threshold: float = 0.5,
    ):
        """torchvision's arguments, and: ``channels_last``: batch the images channels-last
        (oneDNN's and cuDNN's fast convolution layout, and the layout our RoIAlign vectorises
        over; False: NCHW, as torchvision); ``mask_threshold``: where the pasted masks are cut."""
        super().__init__(min_size, max_size, image_mean, image_std, size_divisible, fixed_size)
        self.channels_last = channels_last
        self.mask_threshold = mask_threshold

    @classmethod
    def from_torchvision(cls, transform: GeneralizedRCNNTransform, **options) -> "DetectionTransform":
        """A DetectionTransform with a torchvision GeneralizedRCNNTransform's settings."""
        settings = dict(size_divisible=transform.size_divisible, fixed_size=transform.fixed_size)
        transform_options = dict(
            min_size=transform.min_size, max_size=transform.max_size,
            image_mean=transform.image_mean, image_std=transform.image_std,
        )  # fmt: skip
        new = cls(**transform_options, **(settings | options))
        new._skip_resize = getattr(transform, "_skip_resize", False)
        return new.train(transform.training)

    def batch_images(self, images: list[Tensor], size_divisible: int = 32) -> Tensor:
        """torchvision's batch: zero-padded to the largest image, its sides rounded up to a
        multiple of size_divisible; in integer arithmetic (torchvision's float ceil fixes the
        example's size when torch.export traces it)."""
        channels, height, width = images[0].shape
        for image in images[1:]:
            channels = torch.sym_max(channels, image.shape[0])
            height = torch.sym_max(height, image.shape[1])
            width = torch.sym_max(width, image.shape[2])
        height = (height + size_divisible - 1) // size_divisible * size_divisible
        width = (width + size_divisible - 1) // size_divisible * size_divisible
        padded = [
            F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1], 0, channels - image.shape[0]))
            for image in images
        ]
        batch = torch.stack(padded)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        height, width = image.shape[-2:]
        if self.training:
            if self._skip_resize:
                return image, target
            min_size = self.torch_choice(self.min_size)
        else:
            min_size = self.min_size[-1]
        if self.fixed_size is not None:
            size = (self.fixed_size[1], self.fixed_size[0])
        else:
            # torchvision's scale and rounding (F.interpolate's, with recompute_scale_factor);
            # torch.sym_min/sym_max (builtin min/max on numbers): traced by torch.export for any
            # image size, where min/max would fix the branch of the example image's aspect
            scale = torch.sym_min(min_size / torch.sym_min(height, width), self.max_size / torch.sym_max(height, width))
            # (math.trunc: floor of these positive sizes, and a symbolic op torch.export can save)
            size = (torch.sym_max(1, math.trunc(height * scale)), torch.sym_max(1, math.trunc(width * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        if target is None:
            return image, target
        target["boxes"] = resize_boxes(target["boxes"], (height, width), size)
        if "masks" in target:
            target["masks"] = F.interpolate(target["masks"][:, None].float(), size=size)[:, 0].byte()
        return image, target

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        if self.training:
            return result
        for prediction, image_shape, original_size in zip(result, image_shapes, original_image_sizes):
            prediction["boxes"] = resize_boxes(prediction["boxes"], image_shape, original_size)
            if "masks" in prediction:
                masks = ops.paste_masks(prediction["masks"], prediction["boxes"], original_size, self.mask_threshold)
                prediction["masks"] = masks[:, None]
        return result
