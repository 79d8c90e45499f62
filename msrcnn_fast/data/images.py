"""Reading an image file as the detector's input: float RGB [3, H, W] in 0-1, whatever the file's
PIL mode (RGB, grayscale, palette, with alpha, 16-bit, bilevel, CMYK, ...).

8-bit modes go through PIL's conversion to RGB; an alpha channel is dropped (the colour values
are kept as stored, not blended onto a background), as torchvision's and detectron2's readers
do. 16-bit grayscale ("I;16" PNGs; "I", integer pixels, is taken as 16-bit too) is divided by
65535: PIL's own conversion to RGB would clip every value above 255 to white. Floating-point
pixels (mode "F") have no agreed range and are refused. EXIF orientation is not applied: COCO's
width and height are those of the stored pixels.
"""

import numpy as np
import torch
from PIL import Image

from msrcnn_fast.data.coco_format import CocoFormatError

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageFileError(CocoFormatError):
    """An image file that cannot be read as an image (missing, corrupt, truncated, an unsupported
    pixel format). A CocoFormatError: the dataset that names the file cannot be used either."""

    def __init__(self, message):
        # A DataLoader worker's error is raised again in the main process as
        # ImageFileError("Caught ImageFileError in DataLoader worker process 0.\nOriginal
        # Traceback ...\nmsrcnn_fast.data.images.ImageFileError: <message>"): keep the message
        # (it names the file), not the worker's stack.
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


def image_pixels(image, path):
    """Float32 [H, W, 3] RGB in 0-1 of an open PIL image."""
    if image.mode in SIXTEEN_BIT_MODES:
        gray = np.clip(np.asarray(image, dtype=np.float32), 0, 65535) / 65535
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise ImageFileError(
            f"{path}: floating-point pixels (PIL mode F) have no defined range; save the image as 8-bit or 16-bit"
        )
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255


def read_rgb(path):
    """Float tensor [3, H, W] in 0-1 of the image file at `path`; ImageFileError naming the
    file and the problem when it cannot be read."""
    try:
        with Image.open(path) as image:
            pixels = image_pixels(image, path)
    except ImageFileError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageFileError(f"{path}: cannot read image: {error}") from error
    return torch.from_numpy(pixels).permute(2, 0, 1)
