"""msrcnn_fast.ops.paste_masks against torchvision's paste_masks_in_image(...)[:, 0] > threshold.

Ties: a pasted value within a few ulps of the threshold may compare either way (the kernel's
sums may be fused into FMAs where ATen's are not), so pixels whose torchvision value lies
within `band` of the threshold are not compared: 1e-12 for float64 masks, 1e-6 for float32
(~16 ulps of 0.5), 4e-3 for float16/bfloat16 (the weights and output are rounded to the mask
dtype; one ulp of 0.5 is 2^-11 / 2^-8). Each test asserts that the band holds few pixels.
Where torchvision raises (a box wholly outside the image), nothing may be pasted.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection.roi_heads import paste_masks_in_image

from msrcnn_fast import ops
from msrcnn_fast.ops import _reference as ref

BANDS = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 4e-3, torch.bfloat16: 4e-3}


def make_masks(n, size=28, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(n, 1, size, size, generator=g)).sigmoid().to(dtype)


def make_boxes(n, height, width, dtype=torch.float32, seed=1, outside=0.3):
    """Boxes of 0.5 to ~1.2x the image a side; about `outside` of them cross the border."""
    g = torch.Generator().manual_seed(seed)
    x1 = torch.rand(n, generator=g) * width * (1 + 2 * outside) - width * outside
    y1 = torch.rand(n, generator=g) * height * (1 + 2 * outside) - height * outside
    w = 0.5 + torch.rand(n, generator=g) ** 2 * width * 1.2
    h = 0.5 + torch.rand(n, generator=g) ** 2 * height * 1.2
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1).to(dtype)


def torchvision_values(masks, boxes, image_size, padding=1):
    """[N, H, W] pasted probabilities, mask by mask; None where torchvision raises."""
    values = []
    for mask, box in zip(masks, boxes):
        try:
            values.append(paste_masks_in_image(mask[None], box[None], image_size, padding)[0, 0])
        except RuntimeError:
            values.append(None)
    return values


def assert_matches_torchvision(actual, masks, boxes, image_size, threshold=0.5, padding=1, max_ties=0.001):
    band = BANDS[masks.dtype]
    assert actual.dtype == torch.bool and actual.shape == (len(masks), *image_size)
    ties = 0
    for n, value in enumerate(torchvision_values(masks, boxes, image_size, padding)):
        if value is None:
            assert not actual[n].any(), f"mask {n}: pasted where torchvision fails (box wholly outside)"
            continue
        # torchvision compares in the mask dtype (its threshold is rounded to it).
        expected = value > torch.tensor(threshold, dtype=value.dtype)
        tie = (value.double() - torch.tensor(threshold, dtype=value.dtype).double()).abs() <= band
        ties += int(tie.sum())
        mismatch = (actual[n] != expected) & ~tie
        assert not mismatch.any(), f"mask {n}: {int(mismatch.sum())} pixels differ, first at {mismatch.nonzero()[0]}"
    assert ties <= max_ties * actual.numel() + 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("box_dtype", [torch.float32, torch.float64])
def test_matches_torchvision(cpu_capability, dtype, box_dtype):
    masks = make_masks(30, dtype=dtype)
    boxes = make_boxes(30, 60, 80, box_dtype)
    actual = ops.paste_masks(masks, boxes, (60, 80))
    assert_matches_torchvision(actual, masks, boxes, (60, 80))
    assert actual.any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(cpu_capability, dtype):
    masks = make_masks(12, dtype=dtype)
    boxes = make_boxes(12, 40, 50)
    assert_matches_torchvision(ops.paste_masks(masks, boxes, (40, 50)), masks, boxes, (40, 50), max_ties=0.02)


def test_integer_boxes_round_as_torchvision(cpu_capability):
    # Integer and half-integer boxes in float32: the expanded box's truncation to int64 must
    # follow torchvision's rounding exactly, or whole rows and columns shift.
    g = torch.Generator().manual_seed(2)
    x1 = torch.randint(-20, 90, (60,), generator=g)
    y1 = torch.randint(-20, 70, (60,), generator=g)
    w = torch.randint(0, 60, (60,), generator=g)
    h = torch.randint(0, 60, (60,), generator=g)
    boxes = torch.stack([x1, y1, x1 + w, y1 + h], dim=1).float()
    boxes[::2] += 0.5
    masks = make_masks(60, seed=3)
    assert_matches_torchvision(ops.paste_masks(masks, boxes, (64, 96)), masks, boxes, (64, 96))


@pytest.mark.parametrize("padding,threshold", [(0, 0.5), (2, 0.3), (1, 0.7)])
def test_padding_and_threshold(padding, threshold):
    masks = make_masks(10, size=14, dtype=torch.float64)
    boxes = make_boxes(10, 30, 40, torch.float64)
    actual = ops.paste_masks(masks, boxes, (30, 40), threshold, padding)
    assert_matches_torchvision(actual, masks, boxes, (30, 40), threshold, padding)


def test_edge_boxes():
    boxes = torch.tensor(
        [
            [-50.0, -40.0, -10.0, -5.0],  # wholly outside: torchvision raises
            [100.0, 10.0, 140.0, 30.0],  # right of the image
            [10.0, 10.0, 10.0, 30.0],  # zero width
            [20.0, 20.0, 20.0, 20.0],  # a point
            [30.0, 30.0, 10.0, 12.0],  # inverted
            [-1000.0, -1000.0, 1000.0, 1000.0],  # holds the image
            [-0.7, -0.2, 5.3, 5.9],  # truncation towards zero, not floor
            [0.0, 0.0, 79.0, 59.0],  # the image
        ]
    )
    masks = make_masks(len(boxes), dtype=torch.float64)
    actual = ops.paste_masks(masks, boxes, (60, 80))
    assert_matches_torchvision(actual, masks, boxes, (60, 80))
    assert not actual[0].any() and not actual[1].any() and not actual[4].any()
    nan_box = torch.tensor([[float("nan"), 0.0, 10.0, 10.0]])
    assert not ops.paste_masks(masks[:1], nan_box, (20, 20)).any()


def test_empty():
    masks = make_masks(3)
    boxes = make_boxes(3, 20, 30)
    assert ops.paste_masks(masks[:0], boxes[:0], (20, 30)).shape == (0, 20, 30)
    assert ops.paste_masks(masks, boxes, (0, 30)).shape == (3, 0, 30)


def test_three_dimensional_masks_and_reference():
    masks = make_masks(5, dtype=torch.float64)
    boxes = make_boxes(5, 20, 30, torch.float64, outside=0.0)
    actual = ops.paste_masks(masks[:, 0], boxes, [20, 30])
    assert torch.equal(actual, ops.paste_masks(masks, boxes, (20, 30)))
    assert torch.equal(actual, ref.paste_masks(masks, boxes, (20, 30)))


def test_by_element_body_matches_torchvision():
    """The CUDA kernel's per-pixel code, run on the CPU."""
    for dtype in (torch.float64, torch.float32):
        masks = make_masks(16, size=10, dtype=dtype, seed=4)
        boxes = make_boxes(16, 24, 36, seed=5)
        actual = torch.ops.msrcnn_testing.paste_masks_by_element(masks, boxes, 24, 36, 0.5, 1)
        assert_matches_torchvision(actual, masks, boxes, (24, 36))


def test_opcheck():
    masks = make_masks(4, size=6)
    boxes = make_boxes(4, 10, 12)
    torch.library.opcheck(torch.ops.msrcnn.paste_masks.default, (masks, boxes, 10, 12, 0.5, 1))


def test_torch_compile_fullgraph():
    def mask_areas(masks, boxes):
        return ops.paste_masks(masks, boxes, (20, 24)).sum(dim=(1, 2))

    masks = make_masks(5, size=8)
    boxes = make_boxes(5, 20, 24)
    compiled = torch.compile(mask_areas, fullgraph=True, backend="inductor")
    torch.testing.assert_close(compiled(masks, boxes), mask_areas(masks, boxes))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda m, b: ops.paste_masks(m[:, :, :5], b, (10, 10)), ValueError, r"masks of shape \[N, 1, M, M\]"),
        (lambda m, b: ops.paste_masks(m[0, 0], b, (10, 10)), ValueError, r"masks of shape \[N, 1, M, M\]"),
        (lambda m, b: ops.paste_masks(m.long(), b, (10, 10)), TypeError, "masks to be a floating-point"),
        (lambda m, b: ops.paste_masks(m, b[:2], (10, 10)), ValueError, r"boxes of shape \[3, 4\]"),
        (lambda m, b: ops.paste_masks(m, b.half(), (10, 10)), TypeError, "float32 or float64"),
        (lambda m, b: ops.paste_masks(m, b, (-1, 10)), ValueError, "non-negative image_size"),
        (lambda m, b: ops.paste_masks(m, b, (10, 10), padding=-1), ValueError, r"padding in \[0, 2\^40\]"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(make_masks(3), make_boxes(3, 10, 10))


@given(
    n=st.integers(0, 5),
    size=st.integers(1, 8),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    padding=st.integers(0, 2),
    threshold=st.sampled_from([0.5, 0.25, 0.9]),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_torchvision(n, size, height, width, padding, threshold, seed):
    masks = make_masks(n, size, torch.float64, seed)
    boxes = make_boxes(n, height, width, torch.float64, seed + 1, outside=0.5)
    actual = ops.paste_masks(masks, boxes, (height, width), threshold, padding)
    assert_matches_torchvision(actual, masks, boxes, (height, width), threshold, padding)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_cuda_matches_cpu(dtype):
    masks = make_masks(50, dtype=dtype)
    boxes = make_boxes(50, 120, 160)
    expected = ops.paste_masks(masks, boxes, (120, 160))
    actual = ops.paste_masks(masks.cuda(), boxes.cuda(), (120, 160)).cpu()
    assert (actual != expected).sum() <= 1e-4 * expected.numel()  # threshold ties only
    torch.library.opcheck(torch.ops.msrcnn.paste_masks.default, (masks.cuda(), boxes.cuda(), 120, 160, 0.5, 1))


def test_negative_threshold_counts_unpasted_pixels_as_probability_zero():
    """paste_masks_in_image(...) > threshold: outside every box the probability is 0, so a
    negative threshold makes it foreground there too (the CPU kernel and the CUDA body)."""
    masks = make_masks(3)
    boxes = torch.tensor([[1.0, 2.0, 9.0, 7.5], [float("nan"), 0.0, 4.0, 4.0], [-3.0, 5.0, 6.0, 14.0]])
    for threshold in (-0.25, float("-inf")):
        got = ops.paste_masks(masks, boxes, (12, 16), threshold)
        assert got[1].all()
        keep = [0, 2]
        expected = ref.paste_masks(masks[keep], boxes[keep], (12, 16), threshold)
        assert torch.equal(got[keep], expected)
        by_element = torch.ops.msrcnn_testing.paste_masks_by_element(masks, boxes, 12, 16, threshold, 1)
        assert torch.equal(got, by_element)
