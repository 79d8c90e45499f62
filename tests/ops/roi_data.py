"""Random feature maps and boxes for the RoIAlign tests."""

import torch


def random_boxes(num, height, width, generator, *, max_size=None, outside=0.2):
    """(x1, y1, x2, y2) boxes in image coordinates; about `outside` of them cross the border."""
    max_size = max_size or max(height, width)
    x1 = torch.rand(num, generator=generator) * width * (1 + 2 * outside) - width * outside
    y1 = torch.rand(num, generator=generator) * height * (1 + 2 * outside) - height * outside
    w = torch.rand(num, generator=generator) * max_size
    h = torch.rand(num, generator=generator) * max_size
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def random_rois(num, batch, height, width, generator, **kwargs):
    """Tensor[K, 5] with batch indices in [0, batch)."""
    ids = torch.randint(0, batch, (num, 1), generator=generator).float()
    return torch.cat([ids, random_boxes(num, height, width, generator, **kwargs)], dim=1)


# Edge cases: wholly outside, zero-size, inverted, a point, the whole image, huge.
EDGE_BOXES = [
    [-50.0, -50.0, -10.0, -10.0],
    [500.0, 500.0, 600.0, 650.0],
    [10.0, 10.0, 10.0, 10.0],
    [20.0, 5.0, 20.0, 30.0],
    [30.0, 30.0, 10.0, 12.0],
    [40.0, 10.0, 5.0, 50.0],
    [0.0, 0.0, 64.0, 48.0],
    [-1000.0, -1000.0, 1000.0, 1000.0],
    [63.9, 47.9, 64.0, 48.0],
    [-0.5, -0.5, 0.5, 0.5],
]
