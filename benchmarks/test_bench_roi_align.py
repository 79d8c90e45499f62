"""RoIAlign and MultiScaleRoIAlign: msrcnn_fast against torchvision, side by side.

Mask R-CNN's shapes at 800x1088, batch 2, FPN P2-P5 with 256 channels: the box head pools
512 RoIs per image at 7x7, the mask head 128 positive RoIs per image at 14x14 (training);
at inference the mask head pools the 100 detections of one image. Features come NCHW (as
torchvision's FPN gives them) or channels-last (as a model can keep them).
"""

from collections import OrderedDict

import pytest
import torch
import torchvision

from benchmarks.conftest import BASELINE, OURS, measure
from msrcnn_fast import ops

IMAGE = (800, 1088)
CHANNELS = 256
LEVELS = ("p2", "p3", "p4", "p5")


def fpn_features(batch, channels_last):
    g = torch.Generator().manual_seed(0)
    maps = OrderedDict()
    for i, name in enumerate(LEVELS):
        x = torch.randn(batch, CHANNELS, IMAGE[0] // 2 ** (i + 2), IMAGE[1] // 2 ** (i + 2), generator=g)
        maps[name] = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    return maps


def proposals(batch, per_image):
    """Boxes of 4 to 400 pixels a side anywhere in the image, so every level is used."""
    g = torch.Generator().manual_seed(1)
    boxes = []
    for _ in range(batch):
        xy = torch.rand(per_image, 2, generator=g) * torch.tensor([IMAGE[1], IMAGE[0]])
        wh = 4 + torch.rand(per_image, 2, generator=g) ** 2 * 400
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    return boxes


def poolers(output_size):
    return {
        BASELINE: torchvision.ops.MultiScaleRoIAlign(list(LEVELS), output_size, 2),
        OURS: ops.MultiScaleRoIAlign(list(LEVELS), output_size, 2),
    }


CASES = {
    # name: (batch, RoIs per image, output size, speedup target over torchvision)
    "box head, 2 x 512 RoIs, 7x7": (2, 512, 7, 2.0),
    "mask head, 2 x 128 RoIs, 14x14": (2, 128, 14, 1.5),
    "inference masks, 1 x 100 RoIs, 14x14": (1, 100, 14, 1.5),
}


@pytest.mark.parametrize("impl", [BASELINE, OURS])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", list(CASES))
def test_multi_scale_forward(benchmark, case, layout, impl):
    batch, per_image, output_size, target = CASES[case]
    features = fpn_features(batch, layout == "channels_last")
    boxes = proposals(batch, per_image)
    shapes = [IMAGE] * batch
    pooler = poolers(output_size)[impl]
    result = measure(
        benchmark,
        lambda: pooler(features, boxes, shapes),
        impl=impl,
        group=f"MultiScaleRoIAlign fwd, {case}, {layout}",
        target=target,
        rounds=5,
    )
    assert result.shape == (batch * per_image, CHANNELS, output_size, output_size)


@pytest.mark.parametrize("impl", [BASELINE, OURS])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", ["box head, 2 x 512 RoIs, 7x7", "mask head, 2 x 128 RoIs, 14x14"])
def test_multi_scale_forward_backward(benchmark, case, layout, impl):
    batch, per_image, output_size, _ = CASES[case]
    features = fpn_features(batch, layout == "channels_last")
    boxes = proposals(batch, per_image)
    shapes = [IMAGE] * batch
    pooler = poolers(output_size)[impl]
    grad = torch.randn(batch * per_image, CHANNELS, output_size, output_size)

    def step():
        leaves = OrderedDict((k, v.detach().requires_grad_()) for k, v in features.items())
        pooler(leaves, boxes, shapes).backward(grad)
        return leaves

    measure(benchmark, step, impl=impl, group=f"MultiScaleRoIAlign fwd+bwd, {case}, {layout}", target=2.0, rounds=3)


@pytest.mark.parametrize("impl", [BASELINE, OURS])
def test_roi_align_single_level(benchmark, impl):
    """One map (P3 of 2 images), 1024 RoIs, 7x7, sampling_ratio 2, NCHW."""
    x = fpn_features(2, channels_last=False)["p3"]
    boxes = proposals(2, 512)
    fn = torchvision.ops.roi_align if impl == BASELINE else ops.roi_align
    measure(
        benchmark,
        lambda: fn(x, boxes, 7, 0.125, 2),
        impl=impl,
        group="roi_align fwd, P3, 2 x 512 RoIs, 7x7, nchw",
        target=1.5,
    )
