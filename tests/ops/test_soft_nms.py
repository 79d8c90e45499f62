"""Soft-NMS against the step-by-step reference (msrcnn_fast/ops/_reference.py).

float64 is compared exactly (indices) and to 1e-12 (scores): the kernels and the reference
take the same steps in the same precision; only exp() may differ in the last bit. float32 is
compared on data whose scores are far apart relative to float32 rounding, so the selection
order cannot flip; scores then agree to float32 rounding of a product of decays (rtol 1e-5).
"""

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import msrcnn_fast
from msrcnn_fast import ops
from msrcnn_fast.ops._reference import batched_soft_nms_reference, soft_nms_reference

METHODS = ["gaussian", "linear", "hard"]


def detections(n, seed=0, size=200.0, dtype=torch.float64):
    """Clustered boxes, like a detector's output around a few objects."""
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 8)
    centers = torch.rand(objects, 2, generator=g) * size
    extent = 10 + torch.rand(objects, 2, generator=g) * 60
    which = torch.randint(0, objects, (n,), generator=g)
    c = centers[which] + torch.randn(n, 2, generator=g) * extent[which] * 0.2
    wh = extent[which] * (1 + 0.3 * torch.rand(n, 2, generator=g))
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=1)
    scores = torch.rand(n, generator=g)
    return boxes.to(dtype), scores.to(dtype)


def test_avx512_build_on_amd_only(cpu_capability):
    """The AVX512 build (faster on AMD's Zen 4, slower on Intel's AVX-512 cores) is taken on an
    AMD CPU at capability avx512 only: build_info's amd_avx512. The tests below run it there."""
    info = msrcnn_fast.build_info()
    if cpu_capability != "avx512":
        assert info["amd_avx512"] is False
    elif os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            assert info["amd_avx512"] is ("AuthenticAMD" in f.read())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("iou_threshold,sigma", [(0.3, 0.5), (0.5, 0.6), (0.7, 0.1)])
def test_matches_reference_float64(cpu_capability, method, iou_threshold, sigma):
    boxes, scores = detections(80)
    keep, new_scores = ops.soft_nms(boxes, scores, iou_threshold, sigma, 1e-3, method)
    ref_keep, ref_scores = soft_nms_reference(boxes, scores, iou_threshold, sigma, 1e-3, method)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores, ref_scores, atol=1e-12, rtol=0)
    assert new_scores.dtype == torch.float64 and keep.dtype == torch.int64


@pytest.mark.parametrize("method", METHODS)
def test_matches_reference_float32(cpu_capability, method):
    boxes, _ = detections(60, seed=1, dtype=torch.float32)
    scores = torch.randperm(60, generator=torch.Generator().manual_seed(2)).float() / 60 + 0.05
    keep, new_scores = ops.soft_nms(boxes, scores, 0.3, 0.5, 1e-3, method)
    ref_keep, ref_scores = soft_nms_reference(boxes, scores, 0.3, 0.5, 1e-3, method)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores.double(), ref_scores, rtol=1e-5, atol=1e-7)
    assert new_scores.dtype == torch.float32


@pytest.mark.parametrize("method", METHODS)
def test_large_input_compacts_and_agrees(cpu_capability, method):
    """Enough boxes that dropped ones are compacted away mid-run."""
    boxes, scores = detections(600, seed=3)
    keep, new_scores = ops.soft_nms(boxes, scores, 0.3, 0.5, 0.05, method)
    ref_keep, ref_scores = soft_nms_reference(boxes, scores, 0.3, 0.5, 0.05, method)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores, ref_scores, atol=1e-12, rtol=0)


def test_indices_point_into_the_input_and_scores_fall():
    boxes = torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 10, 10], [0, 0, 9, 9.0]], dtype=torch.float64)
    scores = torch.tensor([0.5, 0.7, 0.9, 0.2], dtype=torch.float64)
    keep, new_scores = ops.soft_nms(boxes, scores, 0.3, 0.5, 1e-3, "gaussian")
    assert keep.tolist()[:2] == [2, 1]  # highest first, by input index
    assert set(keep.tolist()) == {0, 1, 2, 3}
    assert torch.all(new_scores[:-1] >= new_scores[1:])
    assert new_scores[0] == 0.9 and new_scores[1] == 0.7  # the far box is untouched
    hard_keep, hard_scores = ops.soft_nms(boxes, scores, 0.5, 0.5, 1e-3, "hard")
    assert hard_keep.tolist() == [2, 1]  # boxes 0 and 3 overlap box 2 by >= 0.5
    assert hard_scores.tolist() == [0.9, 0.7]


def test_score_threshold_applies_to_every_remaining_box():
    boxes, scores = detections(50, seed=4)
    for threshold in (0.0, 0.2, 0.5):
        keep, new_scores = ops.soft_nms(boxes, scores, 0.3, 0.5, threshold, "linear")
        assert torch.all(new_scores >= threshold)
        assert set(keep.tolist()).isdisjoint(torch.nonzero(scores < threshold).flatten().tolist())


def test_offset_option():
    boxes = torch.tensor([[0, 0, 1, 1], [1, 1, 2, 2]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    # Without +1 the boxes only touch (IoU 0); with +1 they share a pixel: IoU 1/7.
    assert ops.soft_nms(boxes, scores, method="linear")[1].tolist() == [0.9, 0.8]
    _, decayed = ops.soft_nms(boxes, scores, 0.1, method="linear", offset=1.0)
    torch.testing.assert_close(decayed, torch.tensor([0.9, 0.8 * (1 - 1 / 7)], dtype=torch.float64))
    ref = soft_nms_reference(boxes, scores, 0.1, method="linear", offset=1.0)[1]
    torch.testing.assert_close(decayed, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_computed_in_float32(dtype):
    boxes, _ = detections(40, seed=5, dtype=torch.float32)
    scores = torch.randperm(40, generator=torch.Generator().manual_seed(6)).float() / 40 + 0.05
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    keep, new_scores = ops.soft_nms(boxes, scores)
    assert new_scores.dtype == dtype
    ref_keep, ref_scores = soft_nms_reference(boxes.float(), scores.float())
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores.double(), ref_scores.to(dtype).double())


@pytest.mark.parametrize("method", METHODS)
def test_batched_matches_reference(cpu_capability, method):
    boxes, scores = detections(120, seed=7)
    idxs = torch.randint(0, 6, (120,), generator=torch.Generator().manual_seed(8)) * 7 - 10  # any integer labels
    keep, new_scores = ops.batched_soft_nms(boxes, scores, idxs, 0.3, 0.5, 1e-3, method)
    ref_keep, ref_scores = batched_soft_nms_reference(
        boxes, scores, idxs, iou_threshold=0.3, sigma=0.5, score_threshold=1e-3, method=method
    )
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores, ref_scores, atol=1e-12, rtol=0)
    assert torch.all(new_scores[:-1] >= new_scores[1:])


def test_categories_do_not_interact():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8])
    _, same = ops.batched_soft_nms(boxes, scores, torch.tensor([3, 3]), method="hard")
    _, different = ops.batched_soft_nms(boxes, scores, torch.tensor([3, 4]), method="hard")
    assert same.tolist() == pytest.approx([0.9]) and different.tolist() == pytest.approx([0.9, 0.8])


def test_batched_is_parallel_safe_and_deterministic():
    boxes, scores = detections(3000, seed=9, dtype=torch.float32)
    idxs = torch.randint(0, 40, (3000,), generator=torch.Generator().manual_seed(10))
    first = ops.batched_soft_nms(boxes, scores, idxs)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = ops.batched_soft_nms(boxes, scores, idxs)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first[0], single[0]) and torch.equal(first[1], single[1])


@pytest.mark.parametrize("method", METHODS)
def test_cuda_algorithm_by_element_matches_reference(method):
    """The CUDA kernel's steps (decay element bodies + arg-max), run on the CPU."""
    boxes, scores = detections(70, seed=11)
    idxs = torch.randint(0, 3, (70,), generator=torch.Generator().manual_seed(12))
    keep, new_scores = torch.ops.msrcnn_testing.batched_soft_nms_by_element(
        boxes, scores, idxs, 0.4, 0.5, 1e-2, method, 0.0
    )
    ref_keep, ref_scores = batched_soft_nms_reference(
        boxes, scores, idxs, iou_threshold=0.4, sigma=0.5, score_threshold=1e-2, method=method
    )
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores, ref_scores, atol=1e-12, rtol=0)


def test_empty_and_all_below_threshold():
    empty_keep, empty_scores = ops.soft_nms(torch.zeros(0, 4), torch.zeros(0))
    assert empty_keep.shape == (0,) and empty_scores.shape == (0,) and empty_keep.dtype == torch.int64
    keep, _ = ops.batched_soft_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert keep.numel() == 0
    boxes, scores = detections(10)
    assert ops.soft_nms(boxes, scores * 1e-4, score_threshold=1e-3)[0].numel() == 0


def test_opcheck():
    boxes, scores = detections(30, seed=13, dtype=torch.float32)
    idxs = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(14))
    torch.library.opcheck(torch.ops.msrcnn.soft_nms.default, (boxes, scores, 0.3, 0.5, 1e-3, "gaussian", 0.0))
    torch.library.opcheck(
        torch.ops.msrcnn.batched_soft_nms.default, (boxes, scores, idxs, 0.3, 0.5, 1e-3, "linear", 0.0)
    )


def test_torch_compile_fullgraph():
    def top_scores(boxes, scores, idxs):
        keep, new_scores = ops.batched_soft_nms(boxes, scores, idxs)
        return boxes[keep], new_scores * 2

    boxes, scores = detections(40, seed=15, dtype=torch.float32)
    idxs = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(16))
    compiled = torch.compile(top_scores, fullgraph=True)
    for got, want in zip(compiled(boxes, scores, idxs), top_scores(boxes, scores, idxs)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda b, s: ops.soft_nms(b[:, :3], s), ValueError, r"boxes of shape \[N, 4\]"),
        (lambda b, s: ops.soft_nms(b, s[:, None]), ValueError, r"scores of shape \[N\]"),
        (lambda b, s: ops.soft_nms(b, s[:-1]), ValueError, "one score per box"),
        (lambda b, s: ops.soft_nms(b.long(), s), TypeError, "boxes to be a floating-point"),
        (lambda b, s: ops.batched_soft_nms(b, s, torch.zeros(len(s))), TypeError, "idxs of an integer dtype"),
        (lambda b, s: ops.batched_soft_nms(b, s, torch.zeros(3, dtype=torch.long)), ValueError, "one category"),
        (lambda b, s: ops.soft_nms(b, s, sigma=0.0), ValueError, "sigma > 0"),
        (lambda b, s: ops.soft_nms(b, s, sigma=-1.0), ValueError, "sigma > 0"),
        (lambda b, s: ops.soft_nms(b, s, method="box"), ValueError, "method 'gaussian', 'linear' or 'hard'"),
        (lambda b, s: ops.soft_nms(b, s, offset=0.5), ValueError, "offset 0 or 1"),
        (lambda b, s: ops.soft_nms(b, torch.where(s > 0.5, float("nan"), s)), ValueError, "scores contain NaN"),
        (lambda b, s: ops.soft_nms(b * float("nan"), s), ValueError, "boxes contain NaN"),
        (lambda b, s: ops.soft_nms(b, s, iou_threshold=float("inf")), ValueError, "finite iou_threshold"),
    ],
)
def test_bad_input(call, error, match):
    boxes, scores = detections(10, dtype=torch.float32)
    with pytest.raises(error, match=match):
        call(boxes, scores)


box_values = st.integers(0, 12).map(float)


@st.composite
def box_sets(draw):
    """Small integer boxes: identical, nested, touching and zero-area boxes are all likely."""
    n = draw(st.integers(0, 14))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(box_values), draw(box_values)
        boxes.append([x1, y1, x1 + draw(st.integers(0, 6)), y1 + draw(st.integers(0, 6))])
    scores = draw(st.lists(st.sampled_from([0.0005, 0.1, 0.3, 0.5, 0.9, 1.0]), min_size=n, max_size=n))
    idxs = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return (
        torch.tensor(boxes, dtype=torch.float64).reshape(n, 4),
        torch.tensor(scores, dtype=torch.float64),
        torch.tensor(idxs, dtype=torch.int64),
    )


@given(data=box_sets(), method=st.sampled_from(METHODS), iou_threshold=st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_fuzz_against_reference(data, method, iou_threshold):
    boxes, scores, idxs = data
    kwargs = dict(iou_threshold=iou_threshold, sigma=0.5, score_threshold=1e-3, method=method)
    keep, new_scores = ops.soft_nms(boxes, scores, **kwargs)
    ref_keep, ref_scores = soft_nms_reference(boxes, scores, **kwargs)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores, ref_scores, atol=1e-12, rtol=0)
    keep, new_scores = ops.batched_soft_nms(boxes, scores, idxs, **kwargs)
    ref_keep, ref_scores = batched_soft_nms_reference(boxes, scores, idxs, **kwargs)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new_scores, ref_scores, atol=1e-12, rtol=0)


@given(data=box_sets(), method=st.sampled_from(METHODS))
def test_fuzz_one_box_per_category(data, method):
    boxes, scores, _ = data
    idxs = torch.arange(len(scores))
    keep, new_scores = ops.batched_soft_nms(boxes, scores, idxs, method=method)
    survivors = torch.nonzero(scores >= 1e-3).flatten()
    order = sorted(survivors.tolist(), key=lambda i: (-scores[i].item(), i))
    assert keep.tolist() == order and torch.equal(new_scores, scores[keep])


@pytest.mark.cuda
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method):
    boxes, scores = detections(500, seed=17)
    idxs = torch.randint(0, 7, (500,), generator=torch.Generator().manual_seed(18))
    for args in ((boxes, scores), (boxes, scores, idxs)):
        fn = ops.soft_nms if len(args) == 2 else ops.batched_soft_nms
        keep, new_scores = fn(*args, method=method)
        cuda_keep, cuda_scores = fn(*(a.cuda() for a in args), method=method)
        assert torch.equal(cuda_keep.cpu(), keep)
        torch.testing.assert_close(cuda_scores.cpu(), new_scores, atol=1e-12, rtol=0)
