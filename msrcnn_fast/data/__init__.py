"""COCO-format data: dataset, image reading, transforms, batching, training order, shapes generator."""

from msrcnn_fast.data.batching import ImageBatch, collate_images
from msrcnn_fast.data.coco import CocoInstances
from msrcnn_fast.data.coco_format import CocoFormatError, load_coco_instances
from msrcnn_fast.data.images import ImageFileError, read_rgb
from msrcnn_fast.data.sampler import TrainingBatchSampler
from msrcnn_fast.data.transforms import Compose, RandomHorizontalFlip, ResizeMinMax

__all__ = [
    "CocoFormatError",
    "CocoInstances",
    "Compose",
    "ImageBatch",
    "ImageFileError",
    "RandomHorizontalFlip",
    "ResizeMinMax",
    "TrainingBatchSampler",
    "collate_images",
    "load_coco_instances",
    "read_rgb",
]
