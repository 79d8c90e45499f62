"""Image normalisation, resizing and batching (torchvision's), with masks pasted by our kernel."""

from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from msrcnn_fast import ops

__all__ = ["DetectionTransform"]


class DetectionTransform(GeneralizedRCNNTransform):
    """torchvision's GeneralizedRCNNTransform whose postprocess pastes the RoI mask
    probabilities into the original image with msrcnn_fast.ops.paste_masks.

    Output masks are bool [K, 1, H, W]: the probability thresholded at `mask_threshold` (0.5),
    as COCO evaluation and drawing use them (torchvision returns the float probabilities).
    """

    mask_threshold: float = 0.5

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
