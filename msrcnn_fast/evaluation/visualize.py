"""Drawing detections on an image: masks, boxes, class names and both scores."""

import colorsys

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def category_colour(label):
    """A distinct, stable RGB colour per label (golden-ratio hues)."""
    hue = (label * 0.618033988749895) % 1.0
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 1.0))


def draw_detections(image, output, class_names, *, score_thresh=0.5, mask_alpha=0.45):
    """`image` a float tensor [3, H, W] in 0-1; `output` the model's dict for it;
    `class_names[label - 1]` a label's name. Draws detections with score >= score_thresh,
    the label as "name  cls 0.93  mask 0.81". Returns a PIL image."""
    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    canvas = pixels.astype(np.float32)
    keep = (output["scores"] >= score_thresh).nonzero().flatten().tolist()
    masks = output["masks"]
    for i in keep:
        mask = masks[i, 0] if masks.dim() == 4 else masks[i]
        mask = (mask if mask.dtype == torch.bool else mask >= 0.5).cpu().numpy()
        # Blend densely within the mask's bounding rows and columns: boolean indexing of the
        # canvas took ~0.35 s per detection on a 12-megapixel photo.
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            continue
        window = np.s_[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
        region = canvas[window]
        colour = np.asarray(category_colour(int(output["labels"][i])), dtype=np.float32)
        np.copyto(region, region * (1 - mask_alpha) + colour * mask_alpha, where=mask[window][:, :, None])
    result = Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(result)
    font = ImageFont.load_default()
    for i in keep:
        label = int(output["labels"][i])
        colour = category_colour(label)
        x1, y1, x2, y2 = (float(v) for v in output["boxes"][i])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        name = class_names[label - 1] if 1 <= label <= len(class_names) else f"class {label}"
        text = f"{name}  cls {float(output['scores'][i]):.2f}  mask {float(output['mask_scores'][i]):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        y = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
        draw.rectangle([x1, y, x1 + right - left + 4, y + bottom - top + 2], fill=colour)
        draw.text((x1 + 2, y), text, fill=(0, 0, 0), font=font)
    return result
