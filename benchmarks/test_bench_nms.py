"""NMS and Soft-NMS: msrcnn_fast against torchvision 0.29.1 and a plain-PyTorch Soft-NMS loop.

Workloads and targets as the NMS issue (3) states them, float32 on the CPU. Detections are
clustered around objects (about 20 boxes per object), as a detector's are.

* soft_nms (gaussian, sigma 0.5, score_threshold 1e-3), one category of 1000 and of 5000
  boxes. Baseline: a plain-PyTorch loop (one argmax per step). Target: 5000 boxes in at most
  40 ms (an absolute time); 1000 boxes has no target.
* batched Soft-NMS compared with torchvision's hard batched_nms, 80 categories x 1000 boxes.
  Two different algorithms, so the ratio is NOT a speedup: the bound, from issue 3, is that
  our gaussian Soft-NMS takes at most 0.5x the time of torchvision's hard NMS (IoU 0.5) on the
  same boxes in the same run.
* batched_nms (hard, IoU 0.5), 80 categories x 1000 boxes, against torchvision's batched_nms:
  target >= 3x.
* nms (hard, IoU 0.5), one category of 5000 boxes, against torchvision's nms: target >= 1x
  (issue 3: a drop-in, "faster").

Reference figures the issue measured here for mmcv's CPU soft_nms (gaussian; not installed,
not run): 9.8 ms at 1000 boxes, 188 ms at 5000, about 0.8 s for 80 categories x 1000 boxes done
the mmdet way (a loop over categories); torchvision's hard batched_nms on 80 x 1000: 0.41 s.
"""

import pytest
import torch
import torchvision

from benchmarks.conftest import BASELINE, OURS, measure
from msrcnn_fast import ops

IMAGE = (800, 1088)


def detections(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 20)
    centers = torch.rand(objects, 2, generator=g) * torch.tensor([IMAGE[1], IMAGE[0]])
    extent = 20 + torch.rand(objects, 2, generator=g) * 200
    which = torch.randint(0, objects, (n,), generator=g)
    c = centers[which] + torch.randn(n, 2, generator=g) * extent[which] * 0.15
    wh = extent[which] * (1 + 0.2 * torch.randn(n, 2, generator=g)).clamp(min=0.2)
    return torch.cat([c - wh / 2, c + wh / 2], dim=1), torch.rand(n, generator=g)


def soft_nms_torch_loop(boxes, scores, sigma=0.5, score_threshold=1e-3):
    """Gaussian Soft-NMS as plain-PyTorch reimplementations write it: one argmax per step."""
    scores = scores.clone()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    alive = scores >= score_threshold
    keep = []
    while bool(alive.any()):
        best = int(torch.where(alive, scores, -1.0).argmax())
        keep.append(best)
        alive[best] = False
        lt = torch.maximum(boxes[best, :2], boxes[:, :2])
        rb = torch.minimum(boxes[best, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        iou = inter / (areas[best] + areas - inter)
        scores = torch.where(alive, scores * torch.exp(-(iou * iou) / sigma), scores)
        alive &= scores >= score_threshold
    return torch.tensor(keep), scores[keep]


@pytest.mark.parametrize("impl", [BASELINE, OURS])
@pytest.mark.parametrize("n", [1000, 5000])
def test_soft_nms_single_category(benchmark, n, impl):
    """Gaussian Soft-NMS of one category against the plain-PyTorch loop; 5000 boxes: <= 40 ms."""
    boxes, scores = detections(n)
    fn = soft_nms_torch_loop if impl == BASELINE else ops.soft_nms
    rounds = 3 if impl == BASELINE else 10
    measure(
        benchmark,
        lambda: fn(boxes, scores),
        impl=impl,
        group=f"soft_nms gaussian vs plain-PyTorch loop, 1 category x {n} boxes",
        limit=0.040 if n == 5000 else None,
        rounds=rounds,
    )


@pytest.mark.parametrize(
    "impl",
    [
        pytest.param(BASELINE, id="torchvision_hard_batched_nms"),
        pytest.param(OURS, id="msrcnn_fast_batched_soft_nms"),
    ],
)
def test_batched_soft_nms_compared_with_torchvision_hard_nms(benchmark, impl):
    """A comparison of two algorithms, not a speedup: our batched gaussian Soft-NMS against
    torchvision's hard batched_nms (IoU 0.5) on the same 80 categories x 1000 boxes. Bound
    (issue 3): our time <= 0.5x torchvision's, a time ratio of different computations."""
    boxes, scores = detections(80_000, seed=1)
    idxs = torch.arange(80).repeat_interleave(1000)
    if impl == BASELINE:
        fn = lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)  # noqa: E731
    else:
        fn = lambda: ops.batched_soft_nms(boxes, scores, idxs)  # noqa: E731
    measure(
        benchmark,
        fn,
        impl=impl,
        group="comparison, not a speedup: batched Soft-NMS (ours) vs torchvision hard batched_nms, 80 x 1000",
        time_ratio=0.5,
        rounds=3,
    )


@pytest.mark.parametrize("impl", [BASELINE, OURS])
def test_batched_nms(benchmark, impl):
    """Hard batched_nms, IoU 0.5, 80 categories x 1000 boxes; target >= 3x torchvision's batched_nms."""
    boxes, scores = detections(80_000, seed=1)
    idxs = torch.arange(80).repeat_interleave(1000)
    fn = torchvision.ops.batched_nms if impl == BASELINE else ops.batched_nms
    measure(
        benchmark,
        lambda: fn(boxes, scores, idxs, 0.5),
        impl=impl,
        group="batched_nms (hard) vs torchvision, 80 categories x 1000 boxes",
        target=3.0,
        rounds=3,
    )


@pytest.mark.parametrize("impl", [BASELINE, OURS])
def test_nms_single_category(benchmark, impl):
    """Hard nms, IoU 0.5, one category of 5000 boxes; target >= 1x torchvision's nms (faster)."""
    boxes, scores = detections(5000, seed=2)
    fn = torchvision.ops.nms if impl == BASELINE else ops.nms
    group = "nms (hard) vs torchvision, 1 category x 5000 boxes"
    measure(benchmark, lambda: fn(boxes, scores, 0.5), impl=impl, group=group, target=1.0)
