"""msrcnn_fast.ops.maskiou_targets against the references of ops/_reference.py: the vectorised
one (torchvision's project_masks_on_boxes, summed-area tables in PyTorch) and the per-instance
loop of the popular reimplementations with the authors' formula.

Tolerances: float64 mask targets at 1e-10 (the kernel sums roi_align's samples in another
order); maskiou is a ratio of integer counts and the area ratio, compared at 1e-12. float32
mask targets at 1e-4: sample positions are computed in float32, as torchvision's, so both
carry a position error of about |coordinate| * 2^-23 pixels times the mask's slope (<= 1 per
pixel): ~2e-5 measured for 1000-pixel images. A float32 target within that of 0.5 can
binarise either way; maskiou is compared exactly on the other RoIs (see
test_float32_ties_are_the_only_differences).
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from msrcnn_fast import ops
from msrcnn_fast.ops import _reference as ref

RESOLUTION = 28


def make_masks(gts, height, width, generator, empty=()):
    """Ellipses and rectangles of 2 to ~half the image a side; indices in `empty` have no pixels."""
    yy = torch.arange(height, dtype=torch.float64)[:, None]
    xx = torch.arange(width, dtype=torch.float64)[None]
    masks = torch.zeros(gts, height, width, dtype=torch.bool)
    for g in range(gts):
        if g in empty:
            continue
        cy, cx = torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor([height, width])
        ry, rx = 1 + torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor([height, width]) / 4
        if g % 2:
            masks[g] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            masks[g] = ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
        masks[g, int(cy) % height, int(cx) % width] = True  # at least one pixel
    return masks


def make_proposals(masks, rois, generator, dtype=torch.float64, jitter=0.4):
    """Boxes around the matched masks' bounding boxes, jittered; some cross the image border."""
    gts, height, width = masks.shape
    matched = torch.randint(0, gts, (rois,), generator=generator)
    boxes = torch.zeros(gts, 4, dtype=torch.float64)
    for g in range(gts):
        ys, xs = torch.nonzero(masks[g], as_tuple=True)
        if len(ys):
            boxes[g] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float64)
    b = boxes[matched]
    size = (b[:, 2:] - b[:, :2]).repeat(1, 2) + 2
    b = b + (torch.rand(rois, 4, generator=generator, dtype=torch.float64) - 0.5) * 2 * jitter * size
    b = torch.cat([torch.minimum(b[:, :2], b[:, 2:]), torch.maximum(b[:, :2], b[:, 2:])], dim=1)
    return b.to(dtype), matched


def make_image(gts=6, rois=40, height=50, width=70, dtype=torch.float64, seed=0, empty=()):
    g = torch.Generator().manual_seed(seed)
    masks = make_masks(gts, height, width, g, empty)
    proposals, matched = make_proposals(masks, rois, g, dtype)
    logits = 3 * torch.randn(rois, RESOLUTION, RESOLUTION, generator=g)
    return masks, proposals, matched, logits


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("binary", [False, True])
def test_matches_reference_float64(cpu_capability, aligned, binary):
    masks, proposals, matched, logits = make_image()
    targets, maskiou = ops.maskiou_targets(
        masks, proposals, matched, logits, aligned=aligned, binary_mask_targets=binary
    )
    expected_targets, expected_iou = ref.maskiou_targets(masks, proposals, matched, logits, RESOLUTION, aligned, binary)
    assert targets.dtype == maskiou.dtype == torch.float64
    torch.testing.assert_close(targets, expected_targets, atol=1e-10, rtol=0)
    torch.testing.assert_close(maskiou, expected_iou, atol=1e-12, rtol=0)
    assert 0 < maskiou.mean() < 1


def test_matches_per_instance_reference():
    masks, proposals, matched, logits = make_image(gts=8, rois=60, seed=1, empty=(3,))
    targets, maskiou = ops.maskiou_targets(masks, proposals, matched, logits)
    expected_targets, expected_iou = ref.maskiou_targets_per_instance(masks, proposals, matched, logits)
    torch.testing.assert_close(targets, expected_targets, atol=1e-10, rtol=0)
    torch.testing.assert_close(maskiou, expected_iou, atol=1e-12, rtol=0)


def test_float32_ties_are_the_only_differences(cpu_capability):
    masks, proposals, matched, logits = make_image(gts=10, rois=120, height=300, width=400, dtype=torch.float32)
    targets, maskiou = ops.maskiou_targets(masks, proposals, matched, logits)
    expected_targets, expected_iou = ref.maskiou_targets(masks, proposals, matched, logits)
    assert targets.dtype == maskiou.dtype == torch.float32
    torch.testing.assert_close(targets, expected_targets, atol=1e-4, rtol=0)
    near_tie = ((expected_targets - 0.5).abs() < 1e-4).flatten(1).any(1)
    assert near_tie.sum() < 10  # the comparison below covers most RoIs
    torch.testing.assert_close(maskiou[~near_tie], expected_iou[~near_tie], atol=1e-6, rtol=0)


def test_by_element_bodies_match_reference():
    """The CUDA kernels' per-element code (whole-image tables), run on the CPU."""
    for dtype in (torch.float64, torch.float32):
        masks, proposals, matched, logits = make_image(gts=5, rois=30, seed=2, dtype=dtype, empty=(1,))
        for aligned in (False, True):
            targets, maskiou = torch.ops.msrcnn_testing.maskiou_targets_by_element(
                [masks], [proposals], [matched], logits, aligned, False
            )
            expected_targets, expected_iou = ref.maskiou_targets(masks, proposals, matched, logits, 28, aligned)
            atol = 1e-10 if dtype == torch.float64 else 1e-4
            torch.testing.assert_close(targets, expected_targets, atol=atol, rtol=0)
            torch.testing.assert_close(maskiou, expected_iou, atol=1e-6, rtol=0)


def test_box_covering_the_whole_instance_with_a_perfect_prediction_scores_one():
    masks = torch.zeros(2, 40, 50, dtype=torch.bool)
    masks[0, 10:30, 5:33] = True  # 20 x 28 pixels: each target cell is one pixel
    masks[1, 0:40, 0:25] = True
    proposals = torch.tensor([[5.0, 10.0, 33.0, 30.0], [-3.0, -2.0, 60.0, 45.0], [5.0, 10.0, 19.0, 30.0]])
    matched = torch.tensor([0, 0, 0])
    targets, _ = ops.maskiou_targets(masks, proposals, matched, torch.zeros(3, 28, 28))
    logits = torch.where(targets >= 0.5, 5.0, -5.0)  # predicts the target exactly
    _, maskiou = ops.maskiou_targets(masks, proposals, matched, logits)
    assert maskiou[0] == 1.0  # box = instance: area ratio 1, IoU 1
    assert maskiou[1] == 1.0  # box beyond the image holding all of it: ratio 1
    # The box holds the left half: the union counts the right half too.
    torch.testing.assert_close(maskiou[2], torch.tensor(0.5), atol=1e-6, rtol=0)


def test_edge_cases():
    masks, _, _, _ = make_image(gts=3, rois=1, empty=(2,))
    proposals = torch.tensor(
        [
            [-50.0, -40.0, -10.0, -5.0],  # wholly outside: no target, ratio 0
            [100.0, 80.0, 140.0, 120.0],  # outside, right and below
            [10.0, 10.0, 10.0, 30.0],  # zero width
            [20.0, 20.0, 20.0, 20.0],  # a point
            [30.0, 30.0, 10.0, 12.0],  # inverted
            [-1000.0, -1000.0, 1000.0, 1000.0],  # holds the image
            [0.0, 0.0, 70.0, 50.0],  # exactly the image
            [5.0, 5.0, 60.0, 40.0],  # empty ground truth
        ],
        dtype=torch.float64,
    )
    matched = torch.tensor([0, 1, 0, 1, 0, 1, 0, 2])
    logits = 3 * torch.randn(8, 28, 28, generator=torch.Generator().manual_seed(4))
    targets, maskiou = ops.maskiou_targets(masks, proposals, matched, logits)
    expected_targets, expected_iou = ref.maskiou_targets(masks, proposals, matched, logits)
    torch.testing.assert_close(targets, expected_targets, atol=1e-10, rtol=0)
    torch.testing.assert_close(maskiou, expected_iou, atol=1e-12, rtol=0)
    assert maskiou[0] == 0 and maskiou[1] == 0 and maskiou[7] == 0 and not targets[7].any()


def test_no_rois_and_no_ground_truths():
    masks, proposals, matched, logits = make_image()
    targets, maskiou = ops.maskiou_targets(masks, proposals[:0], matched[:0], logits[:0])
    assert targets.shape == (0, 28, 28) and maskiou.shape == (0,)
    targets, maskiou = ops.maskiou_targets(masks[:0], proposals[:0], matched[:0], logits[:0])
    assert targets.shape == (0, 28, 28) and maskiou.shape == (0,)


def test_batched_equals_per_image_calls():
    images = [make_image(seed=s, height=40 + 10 * s, width=60 - 5 * s, rois=10 * s) for s in range(4)]  # 0 RoIs
    targets, maskiou = ops.maskiou_targets_batched(
        [m for m, _, _, _ in images],
        [p for _, p, _, _ in images],
        [i for _, _, i, _ in images],
        torch.cat([lg for _, _, _, lg in images]),
    )
    expected = [ops.maskiou_targets(*image) for image in images]
    torch.testing.assert_close(targets, torch.cat([t for t, _ in expected]), atol=0, rtol=0)
    torch.testing.assert_close(maskiou, torch.cat([i for _, i in expected]), atol=0, rtol=0)
    listed = ops.maskiou_targets_batched(
        [m for m, _, _, _ in images],
        [p for _, p, _, _ in images],
        [i for _, _, i, _ in images],
        [lg for _, _, _, lg in images],
    )
    torch.testing.assert_close(listed[1], maskiou, atol=0, rtol=0)


def test_uint8_masks_and_other_logit_types():
    masks, proposals, matched, logits = make_image(seed=5)
    expected = ops.maskiou_targets(masks, proposals, matched, logits)
    as_bytes = masks.to(torch.uint8) * 255  # any non-zero byte is foreground
    for args in ((as_bytes, logits), (masks, logits.half()), (masks, logits[:, None].bfloat16())):
        actual = ops.maskiou_targets(args[0], proposals, matched, args[1])
        # half logits round towards 0 but keep their sign: the same binarised prediction
        torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def test_prediction_sign_is_read_in_the_logits_dtype():
    masks, proposals, matched, logits = make_image(seed=6, dtype=torch.float32)
    tiny = (logits > 0).double() * 2e-60 - 1e-60  # +-1e-60: 0 in float32, not in float64
    expected = ref.maskiou_targets(masks, proposals, matched, tiny)[1]
    torch.testing.assert_close(ops.maskiou_targets(masks, proposals, matched, tiny)[1], expected, atol=1e-6, rtol=0)
    assert expected.sum() > 0


def test_no_gradient_flows():
    masks, proposals, matched, logits = make_image()
    logits.requires_grad_()
    targets, maskiou = ops.maskiou_targets(masks, proposals, matched, logits)
    assert not targets.requires_grad and not maskiou.requires_grad


def test_opcheck():
    masks, proposals, matched, logits = make_image(gts=3, rois=5, height=20, width=24, dtype=torch.float32)
    for aligned, binary in ((False, False), (True, True)):
        torch.library.opcheck(
            torch.ops.msrcnn.maskiou_targets.default, ([masks], [proposals], [matched], logits, aligned, binary)
        )
    torch.library.opcheck(
        torch.ops.msrcnn.maskiou_targets.default,
        (
            [masks, masks[:1]],
            [proposals, proposals[:2]],
            [matched, matched[:2] * 0],
            torch.cat([logits, logits[:2]]),
            False,
            False,
        ),
    )


def test_torch_compile_fullgraph():
    def maskiou_loss(masks, proposals, matched, logits, predicted_iou):
        _, target = ops.maskiou_targets(masks, proposals, matched, logits)
        return 0.5 * (predicted_iou - target).square().mean()

    masks, proposals, matched, logits = make_image(gts=3, rois=7, height=20, width=24, dtype=torch.float32)
    predicted = torch.rand(7)
    compiled = torch.compile(maskiou_loss, fullgraph=True, backend="inductor")
    torch.testing.assert_close(
        compiled(masks, proposals, matched, logits, predicted),
        maskiou_loss(masks, proposals, matched, logits, predicted),
    )


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda m, p, i, lg: ops.maskiou_targets(m[0], p, i, lg), ValueError, r"gt_masks\[0\] of shape \[G, H, W\]"),
        (lambda m, p, i, lg: ops.maskiou_targets(m.float(), p, i, lg), TypeError, "bool or uint8"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p[:, :3], i, lg), ValueError, r"proposals\[0\] of shape \[N, 4\]"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p.half(), i, lg), TypeError, "float32 or float64"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p, i.int(), lg), TypeError, "int64"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p, i[:3], lg), ValueError, r"matched_idxs\[0\] of shape \[40\]"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p, i + 6, lg), ValueError, r"matched_idxs\[0\]\[0\] = \d+ is not"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p, i - 7, lg), ValueError, "0 <= index < 6"),
        (
            lambda m, p, i, lg: ops.maskiou_targets(m[:0], p, i, lg),
            ValueError,
            r"masks for the 40 proposals of image 0, got gt_masks\[0\]",
        ),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p, i, lg[:5]), ValueError, "mask_logits for the 40 proposals"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p, i, lg, 14), ValueError, r"\[N, 14, 14\]"),
        (lambda m, p, i, lg: ops.maskiou_targets(m, p, i, lg.long()), TypeError, "mask_logits to be a floating"),
        (lambda m, p, i, lg: ops.maskiou_targets_batched([m], [p, p], [i], lg), ValueError, "one gt_masks"),
        (lambda m, p, i, lg: ops.maskiou_targets_batched([], [], [], []), ValueError, "at least one image"),
        (
            lambda m, p, i, lg: ops.maskiou_targets_batched([m, m], [p, p.float()], [i, i], [lg, lg]),
            TypeError,
            "proposals of one dtype",
        ),
    ],
)
def test_bad_input(call, error, match):
    masks, proposals, matched, logits = make_image()
    with pytest.raises(error, match=match):
        call(masks, proposals, matched, logits)


@given(
    gts=st.integers(1, 4),
    rois=st.integers(0, 12),
    height=st.integers(1, 30),
    width=st.integers(1, 30),
    resolution=st.sampled_from([1, 5, 28]),
    aligned=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_reference(gts, rois, height, width, resolution, aligned, seed):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(gts, height, width, generator=g) < torch.rand(gts, 1, 1, generator=g)  # noise of any density
    proposals, matched = make_proposals(masks, rois, g, jitter=1.0)
    logits = torch.randn(rois, resolution, resolution, generator=g)
    targets, maskiou = ops.maskiou_targets(masks, proposals, matched, logits, resolution, aligned=aligned)
    expected_targets, expected_iou = ref.maskiou_targets(masks, proposals, matched, logits, resolution, aligned)
    torch.testing.assert_close(targets, expected_targets, atol=1e-10, rtol=0)
    torch.testing.assert_close(maskiou, expected_iou, atol=1e-12, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    masks, proposals, matched, logits = make_image(gts=10, rois=100, height=200, width=300, dtype=dtype)
    expected_targets, expected_iou = ops.maskiou_targets(masks, proposals, matched, logits)
    targets, maskiou = ops.maskiou_targets(masks.cuda(), proposals.cuda(), matched.cuda(), logits.cuda())
    atol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(targets.cpu(), expected_targets, atol=atol, rtol=0)
    near_tie = ((expected_targets - 0.5).abs() < atol).flatten(1).any(1)
    torch.testing.assert_close(maskiou.cpu()[~near_tie], expected_iou[~near_tie], atol=1e-6, rtol=0)


@pytest.mark.cuda
def test_cuda_opcheck_and_batched():
    images = [make_image(seed=s, rois=5 * s, dtype=torch.float32) for s in range(3)]
    args = [[t.cuda() for t in column] for column in list(zip(*images))[:3]]
    logits = torch.cat([lg for _, _, _, lg in images]).cuda()
    torch.library.opcheck(torch.ops.msrcnn.maskiou_targets.default, (*args, logits, False, False))
    expected = ops.maskiou_targets_batched(*[[t.cpu() for t in a] for a in args], logits.cpu())
    actual = ops.maskiou_targets_batched(*args, logits)
    torch.testing.assert_close(actual[0].cpu(), expected[0], atol=1e-4, rtol=0)
