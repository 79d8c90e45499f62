"""Hard NMS against torchvision.ops.nms / batched_nms.

Scores are made distinct (a permutation), so the order is defined and indices must match
exactly; torchvision computes in the boxes' dtype as we do, so IoUs agree bit for bit.
"""

import importlib

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from msrcnn_fast import ops
from tests.ops.test_soft_nms import box_sets, detections


def distinct_scores(n, seed):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).float() / max(n, 1)


@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_matches_torchvision(cpu_capability, iou_threshold, dtype):
    boxes, _ = detections(400, seed=1, dtype=dtype)
    scores = distinct_scores(400, 2).to(dtype)
    assert torch.equal(ops.nms(boxes, scores, iou_threshold), torchvision.ops.nms(boxes, scores, iou_threshold))


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5])
def test_batched_nms_matches_torchvision(cpu_capability, iou_threshold):
    boxes, _ = detections(600, seed=3, dtype=torch.float32)
    scores = distinct_scores(600, 4)
    idxs = torch.randint(0, 9, (600,), generator=torch.Generator().manual_seed(5))
    expected = torchvision.ops.boxes._batched_nms_vanilla(boxes, scores, idxs, iou_threshold)
    assert torch.equal(ops.batched_nms(boxes, scores, idxs, iou_threshold), expected)
    assert torch.equal(
        ops.batched_nms(boxes, scores, idxs, iou_threshold),
        torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold),
    )


def test_equal_scores_keep_input_order():
    boxes = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    assert ops.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert ops.batched_nms(boxes, scores, torch.tensor([1, 0, 1]), 0.5).tolist() == [0, 1]


def test_threshold_is_strict_like_torchvision():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5.0]])  # IoU exactly 0.5
    scores = torch.tensor([0.9, 0.8])
    assert ops.nms(boxes, scores, 0.5).tolist() == torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert ops.nms(boxes, scores, 0.49).tolist() == [0]


def test_half_inputs():
    boxes, _ = detections(200, seed=6, dtype=torch.float32)
    scores = distinct_scores(200, 7)
    for dtype in (torch.float16, torch.bfloat16):
        b, s = boxes.to(dtype), scores.to(dtype)
        expected = torchvision.ops.nms(b.float(), s.float(), 0.5)
        assert torch.equal(ops.nms(b, s, 0.5), expected)


def test_offset_option():
    boxes = torch.tensor([[0, 0, 1, 1], [1, 1, 2, 2.0]])
    scores = torch.tensor([0.9, 0.8])
    assert ops.nms(boxes, scores, 0.1).tolist() == [0, 1]
    assert ops.nms(boxes, scores, 0.1, offset=1.0).tolist() == [0]  # IoU 1/7 with the +1


def test_empty():
    assert ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    assert ops.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)


def test_cuda_algorithm_by_element_matches_torchvision():
    """The CUDA kernels' mask words and reduction, run on the CPU."""
    boxes, _ = detections(300, seed=8, dtype=torch.float32)
    scores = distinct_scores(300, 9)
    idxs = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(10))
    for iou_threshold in (0.3, 0.6):
        got = torch.ops.msrcnn_testing.batched_nms_by_element(boxes, scores, idxs, iou_threshold, 0.0)
        assert torch.equal(got, torchvision.ops.boxes._batched_nms_vanilla(boxes, scores, idxs, iou_threshold))


def test_opcheck():
    boxes, _ = detections(30, seed=11, dtype=torch.float32)
    scores = distinct_scores(30, 12)
    idxs = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(13))
    torch.library.opcheck(torch.ops.msrcnn.nms.default, (boxes, scores, 0.5, 0.0))
    torch.library.opcheck(torch.ops.msrcnn.batched_nms.default, (boxes, scores, idxs, 0.5, 0.0))


def test_torch_compile_fullgraph():
    def kept_boxes(boxes, scores, idxs):
        return boxes[ops.batched_nms(boxes, scores, idxs, 0.5)]

    boxes, _ = detections(50, seed=14, dtype=torch.float32)
    scores = distinct_scores(50, 15)
    idxs = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(16))
    compiled = torch.compile(kept_boxes, fullgraph=True)
    torch.testing.assert_close(compiled(boxes, scores, idxs), kept_boxes(boxes, scores, idxs))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda b, s: ops.nms(b.T, s, 0.5), ValueError, r"boxes of shape \[N, 4\]"),
        (lambda b, s: ops.nms(b, s[:5], 0.5), ValueError, "one score per box"),
        (lambda b, s: ops.batched_nms(b, s, torch.zeros(len(s)), 0.5), TypeError, "integer dtype"),
        (lambda b, s: ops.batched_nms(b, s, torch.zeros(len(s), 1, dtype=torch.long), 0.5), ValueError, "idxs"),
        (lambda b, s: ops.nms(b, s * float("nan"), 0.5), ValueError, "scores contain NaN"),
        (lambda b, s: ops.nms(b.index_fill(0, torch.tensor([1]), float("inf")), s, 0.5), ValueError, "boxes contain"),
        (lambda b, s: ops.nms(b, s, float("nan")), ValueError, "finite iou_threshold"),
    ],
)
def test_bad_input(call, error, match):
    boxes, scores = detections(10, dtype=torch.float32)
    with pytest.raises(error, match=match):
        call(boxes, scores)


@given(data=box_sets(), iou_threshold=st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_fuzz_against_torchvision(data, iou_threshold):
    boxes, _, idxs = data
    boxes = boxes.float()
    scores = distinct_scores(len(boxes), len(boxes))
    assert torch.equal(ops.nms(boxes, scores, iou_threshold), torchvision.ops.nms(boxes, scores, iou_threshold))
    expected = torchvision.ops.boxes._batched_nms_vanilla(boxes, scores, idxs, iou_threshold)
    assert torch.equal(ops.batched_nms(boxes, scores, idxs, iou_threshold), expected)


@pytest.mark.cuda
def test_cuda_matches_torchvision():
    boxes, _ = detections(3000, seed=17, dtype=torch.float32)
    scores = distinct_scores(3000, 18)
    idxs = torch.randint(0, 20, (3000,), generator=torch.Generator().manual_seed(19))
    b, s, i = boxes.cuda(), scores.cuda(), idxs.cuda()
    assert torch.equal(ops.nms(b, s, 0.5).cpu(), torchvision.ops.nms(boxes, scores, 0.5))
    assert torch.equal(ops.batched_nms(b, s, i, 0.5).cpu(), ops.batched_nms(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("max_kept", [1, 7, 50, 100, 5000])
def test_batched_nms_max_kept_is_the_first_kept_boxes(max_kept, ties, monkeypatch):
    """max_kept=k returns batched_nms(...)[:k]: from the highest-scoring boxes alone where they
    keep k (spied: the shortcut answered), else from all boxes. With ties, many boxes share the
    lowest candidate score, and the order among equal scores is the index's."""
    nms_module = importlib.import_module("msrcnn_fast.ops.nms")

    boxes, scores = detections(4000, seed=5, dtype=torch.float32)
    if ties:
        scores = (scores * 20).floor() / 20
    idxs = torch.randint(0, 80, (4000,), generator=torch.Generator().manual_seed(6))
    answered = []
    first_kept = nms_module._first_kept
    monkeypatch.setattr(nms_module, "_first_kept", lambda *a: answered.append(first_kept(*a)) or answered[-1])
    got = ops.batched_nms(boxes, scores, idxs, 0.5, max_kept=max_kept)
    expected = ops.batched_nms(boxes, scores, idxs, 0.5)[:max_kept]
    assert torch.equal(got, expected)
    shortcut = 4 * max_kept < 4000
    assert len(answered) == shortcut
    if shortcut and max_kept <= 100:
        assert answered[0] is not None  # the highest-scoring boxes kept enough


def test_batched_nms_max_kept_falls_back_to_all_boxes(monkeypatch):
    """One category of near-identical boxes: the highest-scoring ones keep 1 box, fewer than
    max_kept, so every box is run, and the result is still the full one's first kept."""
    nms_module = importlib.import_module("msrcnn_fast.ops.nms")

    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(400, 1) + torch.rand(400, 4, generator=g) * 0.1
    boxes[::50] += 100 * torch.arange(8)[:, None]  # 8 boxes far apart, at low ranks
    scores = distinct_scores(400, 1)
    scores[::50] = scores[::50] / 100
    idxs = torch.zeros(400, dtype=torch.int64)
    answered = []
    first_kept = nms_module._first_kept
    monkeypatch.setattr(nms_module, "_first_kept", lambda *a: answered.append(first_kept(*a)) or answered[-1])
    got = ops.batched_nms(boxes, scores, idxs, 0.5, max_kept=5)
    assert answered == [None]
    assert torch.equal(got, ops.batched_nms(boxes, scores, idxs, 0.5)[:5]) and len(got) == 5


def test_batched_nms_max_kept_edge_values():
    boxes, scores = detections(50, seed=2, dtype=torch.float32)
    idxs = torch.zeros(50, dtype=torch.int64)
    assert ops.batched_nms(boxes, scores, idxs, 0.5, max_kept=0).shape == (0,)
    assert ops.batched_nms(boxes[:0], scores[:0], idxs[:0], 0.5, max_kept=3).shape == (0,)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_kept: expected None or an int >= 0"):
            ops.batched_nms(boxes, scores, idxs, 0.5, max_kept=bad)
    # Bad boxes raise the kernel's error with the shortcut too.
    with pytest.raises(ValueError, match="scores contain NaN"):
        ops.batched_nms(boxes, scores.clone().fill_(float("nan")), idxs, 0.5, max_kept=3)
    scripted = torch.jit.script(ops.batched_nms)
    assert torch.equal(scripted(boxes, scores, idxs, 0.5, 0.0, 3), ops.batched_nms(boxes, scores, idxs, 0.5)[:3])
