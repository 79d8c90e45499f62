"""One image's detections as numpy arrays and RLE masks: the model's output in the form the
COCO tools and the MaskIoU analysis use."""

from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils


@dataclass
class ImageDetections:
    """`boxes` [K, 4] x1y1x2y2; `category_ids` [K] (dataset ids, not labels); `scores` the
    classification scores; `mask_scores` = score x predicted MaskIoU; `predicted_maskiou`;
    `rles` the binary masks, pycocotools compressed RLE, at image resolution."""

    image_id: int
    boxes: np.ndarray
    category_ids: np.ndarray
    scores: np.ndarray
    mask_scores: np.ndarray
    predicted_maskiou: np.ndarray
    rles: list

    def __len__(self):
        return len(self.scores)


def _numpy(tensor, dtype):
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy().astype(dtype)


def detections_from_output(image_id, output, category_ids, max_detections=100):
    """From the model's output dict for one image (boxes, labels, scores, masks [K, 1, H, W]
    bool or probabilities, mask_scores, optional maskiou); keeps the `max_detections` highest
    classification scores. `category_ids[label - 1]` is a label's dataset category id."""
    scores = _numpy(output["scores"], np.float32)
    keep = np.argsort(-scores, kind="stable")[:max_detections]
    masks = output["masks"][torch.as_tensor(keep, dtype=torch.int64)]
    if masks.dim() == 4:
        masks = masks[:, 0]
    binary = masks if masks.dtype == torch.bool else masks >= 0.5
    binary = binary.to("cpu", torch.uint8).numpy()
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(keep) else []
    labels = _numpy(output["labels"], np.int64)[keep]
    lookup = np.asarray(category_ids, dtype=np.int64)
    if len(labels) and (labels.min() < 1 or labels.max() > len(lookup)):
        raise ValueError(f"image {image_id}: predicted labels {labels.tolist()} are outside 1..{len(lookup)}")
    scores = scores[keep]
    mask_scores = _numpy(output["mask_scores"], np.float32)[keep]
    if "maskiou" in output:
        predicted = _numpy(output["maskiou"], np.float32)[keep]
    else:  # mask_score = score x predicted MaskIoU
        predicted = np.where(scores > 0, mask_scores / np.maximum(scores, 1e-12), 0.0).astype(np.float32)
    return ImageDetections(
        image_id=int(image_id),
        boxes=_numpy(output["boxes"], np.float32)[keep].reshape(-1, 4),
        category_ids=lookup[labels - 1] if len(labels) else np.zeros(0, np.int64),
        scores=scores,
        mask_scores=mask_scores,
        predicted_maskiou=predicted,
        rles=list(rles),
    )
