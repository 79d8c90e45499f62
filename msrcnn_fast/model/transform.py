"""Image normalisation, resizing and batching (torchvision's), with masks pasted by our kernel."""

import torch
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
    """

    mask_threshold: float = 0.5
    # Channels-last all the way: oneDNN's and cuDNN's fast convolution layout, and the layout
    # our RoIAlign vectorises over. (Off, the batch is NCHW as torchvision's.)
    channels_last: bool = True

    def batch_images(self, images: list[Tensor], size_divisible: int = 32) -> Tensor:
        batch = super().batch_images(images, size_divisible)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

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
