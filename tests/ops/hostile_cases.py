"""Hostile inputs for every public op of msrcnn_fast.ops (issue 12): the case registry.

Each case is a named function: it calls one op with one hostile input and either must raise
an exception that names the offending argument (``raises``/``names``), or returns after
checking the op's result against what the op's docstring documents (shape, dtype, values).
tests/ops/test_hostile_inputs.py runs every case in its own process with a time limit
(tests/ops/hostile_harness.py). The matrix, one line per case (optionally those whose key
holds one of the words given), from the repository root:

    python -c 'import sys; from tests.ops.hostile_cases import main; sys.exit(main())' [word ...]

(not ``python -m``: the forkserver's children would run this module again as their main).

Inputs are tiny and deterministic. CUDA is absent here: the device cases use the ``meta``
device, alone (the ops' fake kernels give the output's shape) and mixed with CPU tensors (an
error naming the arguments on different devices).
"""

import sys

import torch
import torch.nn.functional as F
import torchvision

from msrcnn_fast import ops
from msrcnn_fast.ops import _reference
from tests.ops.hostile_harness import Mismatch, Registry, run_case

CASES = Registry()
PROBES = Registry()  # cases that test the harness itself (not ops)
case = CASES.case

NAN = float("nan")
INF = float("inf")
HUGE = 1e30
DEVICE_ERRORS = (ValueError, RuntimeError)


# --- checks ---------------------------------------------------------------------------------


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def expect_tensor(t, shape, dtype, device: str = "cpu") -> None:
    expect(isinstance(t, torch.Tensor), f"expected a Tensor, got {type(t).__name__}")
    expect(tuple(t.shape) == tuple(shape), f"expected shape {tuple(shape)}, got {tuple(t.shape)}")
    expect(t.dtype == dtype, f"expected dtype {dtype}, got {t.dtype}")
    expect(t.device.type == device, f"expected a {device} tensor, got {t.device}")


def expect_equal(actual, expected, what: str = "result", rtol: float = 0.0, atol: float = 0.0) -> None:
    """Equal values (NaN equals NaN); exactly unless a tolerance is given."""
    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True, check_stride=False)
    except AssertionError as error:
        raise Mismatch(f"{what}: {error}") from None


def expect_finite(t, what: str = "result") -> None:
    expect(bool(torch.isfinite(t).all()), f"{what} holds non-finite values")


def error_or_result(call, check, types, *names) -> None:
    """For cases with two acceptable outcomes: an error of ``types`` naming ``names``, or a
    result that passes ``check``."""
    from tests.ops.hostile_harness import names_argument

    try:
        result = call()
    except types as error:
        missing = [n for n in names if not names_argument(str(error), n)]
        expect(not missing, f"the message does not name {', '.join(missing)}: {error}")
        return
    check(result)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- RoIAlign family ------------------------------------------------------------------------
# x: [2, 3, 8, 8]; good RoIs of both images; one hostile RoI between them. Where a RoI has a
# NaN or infinite coordinate, the docstrings say: it pools zeros (and gets no gradient), the
# others are unaffected. Elsewhere, torchvision's result wherever torchvision's finishes.

GOOD_ROIS = [[0, 1.0, 1.0, 6.0, 6.0], [1, 0.5, 2.0, 5.0, 7.5]]


# The other RoIs as pooled without the hostile one: equal up to float32 rounding (the CPU
# kernel's results for a RoI can differ by an ulp with the batch it is in).
ALONE = {"rtol": 1e-6, "atol": 1e-6}


def feature_map(n=2, c=3, h=8, w=8, dtype=torch.float32, seed=0):
    return torch.randn(n, c, h, w, generator=generator(seed)).to(dtype)


def rois_with(bad_row, dtype=torch.float32):
    """[good RoI of image 0, bad RoI, good RoI of image 1]."""
    return torch.tensor([GOOD_ROIS[0], bad_row, GOOD_ROIS[1]], dtype=dtype)


def check_bad_roi_pools_zeros(pool, bad_row, channels=3, size=7):
    """pool(rois [K, 5]) -> [K, C, size, size]: the bad RoI pools zeros, the others as alone."""
    rois = rois_with(bad_row)
    out = pool(rois)
    expect_tensor(out, (3, channels, size, size), torch.float32)
    expect_equal(out[1], torch.zeros_like(out[1]), "the RoI with a non-finite coordinate")
    expect_equal(out[[0, 2]], pool(rois[[0, 2]]), "the other RoIs", **ALONE)


def check_huge_roi_bounded(pool, bad_row, x, channels=3, size=7):
    """A huge RoI: a finite result no larger than the map's values (an average of
    interpolations), the other RoIs unaffected."""
    rois = rois_with(bad_row)
    out = pool(rois)
    expect_tensor(out, (3, channels, size, size), torch.float32)
    expect_finite(out)
    expect(bool(out[1].abs().max() <= x.abs().max()), "the huge RoI pools values beyond the map's")
    expect_equal(out[[0, 2]], pool(rois[[0, 2]]), "the other RoIs", **ALONE)


def check_huge_roi_backward(pool, bad_row, x):
    x = x.clone().requires_grad_()
    out = pool(x, rois_with(bad_row))
    expect_finite(out)
    out.sum().backward()
    expect_tensor(x.grad, tuple(x.shape), x.dtype)
    expect_finite(x.grad, "the input gradient")


def roi_align_pool(x=None, sampling_ratio=2, aligned=False, output_size=7):
    x = feature_map() if x is None else x
    return lambda rois: ops.roi_align(x, rois, output_size, 1.0, sampling_ratio, aligned)


def torchvision_roi_align(x, rois, sampling_ratio=2):
    return torchvision.ops.roi_align(x, rois, 7, 1.0, sampling_ratio)


for _name, _row in [
    ("nan_box", [0, NAN, 1.0, 6.0, 6.0]),
    ("posinf_box", [0, 1.0, 1.0, INF, 6.0]),
    ("neginf_box", [1, -INF, 1.0, 6.0, 6.0]),
]:
    case("roi_align", _name)(lambda row=_row: check_bad_roi_pools_zeros(roi_align_pool(), row))
    case("roi_align", f"{_name}_adaptive")(
        lambda row=_row: check_bad_roi_pools_zeros(roi_align_pool(sampling_ratio=-1), row)
    )
    case("roi_align", f"{_name}_aligned")(lambda row=_row: check_bad_roi_pools_zeros(roi_align_pool(aligned=True), row))


@case("roi_align", "nan_box_backward")
def _():
    x = feature_map().requires_grad_()
    ops.roi_align(x, rois_with([0, NAN, 1.0, 6.0, 6.0]), 7, 1.0, 2).sum().backward()
    y = feature_map().requires_grad_()
    ops.roi_align(y, rois_with([0, NAN, 1.0, 6.0, 6.0])[[0, 2]], 7, 1.0, 2).sum().backward()
    expect_equal(x.grad, y.grad, "the gradient (the NaN RoI must add none)")


for _name, _row in [("huge_box", [0, 0.0, 0.0, HUGE, HUGE]), ("neg_huge_box", [1, -HUGE, -HUGE, 4.0, 4.0])]:

    @case("roi_align", _name)
    def _(row=_row):  # fixed sampling grid: torchvision finishes, its result is the reference
        x = feature_map()
        rois = rois_with(row)
        expect_equal(ops.roi_align(x, rois, 7, 1.0, 2), torchvision_roi_align(x, rois), atol=1e-6, rtol=1e-5)


# The adaptive grid (sampling_ratio=-1) of a huge RoI: issue 12's RoIAlign hang. Bounded work,
# a finite result, for single- and multi-level, forward and backward.
HUGE_ADAPTIVE_ROWS = [
    ("huge_box_1e9_adaptive", [0, 0.0, 0.0, 1e9, 1e9]),
    ("huge_box_1e30_adaptive", [0, 0.0, 0.0, HUGE, HUGE]),
    ("neg_huge_box_adaptive", [1, -HUGE, -HUGE, 4.0, 4.0]),
]
for _name, _row in HUGE_ADAPTIVE_ROWS:
    case("roi_align", _name)(
        lambda row=_row: check_huge_roi_bounded(roi_align_pool(sampling_ratio=-1), row, feature_map())
    )
    case("roi_align", f"{_name}_backward")(
        lambda row=_row: check_huge_roi_backward(lambda x, rois: ops.roi_align(x, rois, 7, 1.0, -1), row, feature_map())
    )


for _name, _ratio in [("huge_sampling_ratio_2e31", 2**31), ("huge_sampling_ratio_1e6", 10**6)]:
    case("roi_align", _name, raises=ValueError, names="sampling_ratio")(
        lambda ratio=_ratio: ops.roi_align(feature_map(), rois_with(GOOD_ROIS[0]), 7, 1.0, ratio)
    )

for _name, _size in [("huge_output_size", 2**40), ("huge_output_size_pair", (7, 2**40))]:
    case("roi_align", _name, raises=ValueError, names="output_size")(
        lambda size=_size: ops.roi_align(feature_map(), rois_with(GOOD_ROIS[0]), size, 1.0, 2)
    )
for _name, _size in [("zero_output_size", 0), ("negative_output_size", (-3, 7))]:
    case("roi_align", _name, raises=ValueError, names="output_size")(
        lambda size=_size: ops.roi_align(feature_map(), rois_with(GOOD_ROIS[0]), size, 1.0, 2)
    )

for _name, _scale in [("nan_spatial_scale", NAN), ("zero_spatial_scale", 0.0), ("inf_spatial_scale", INF)]:
    case("roi_align", _name, raises=ValueError, names="spatial_scale")(
        lambda scale=_scale: ops.roi_align(feature_map(), rois_with(GOOD_ROIS[0]), 7, scale, 2)
    )


@case("roi_align", "zero_height_map")
def _():  # no pixels: every sample is off the map, every RoI pools zeros
    out = ops.roi_align(feature_map(h=0), rois_with(GOOD_ROIS[0]), 7, 1.0, -1)
    expect_tensor(out, (3, 3, 7, 7), torch.float32)
    expect_equal(out, torch.zeros_like(out))


@case("roi_align", "zero_width_map_backward")
def _():
    x = feature_map(w=0).requires_grad_()
    out = ops.roi_align(x, rois_with(GOOD_ROIS[0]), 7, 1.0, 2)
    expect_equal(out, torch.zeros(3, 3, 7, 7))
    out.sum().backward()
    expect_tensor(x.grad, (2, 3, 8, 0), torch.float32)


@case("roi_align", "zero_channels")
def _():
    out = ops.roi_align(feature_map(c=0), rois_with(GOOD_ROIS[0]), 7, 1.0, 2)
    expect_tensor(out, (3, 0, 7, 7), torch.float32)


@case("roi_align", "zero_batch_no_rois")
def _():
    out = ops.roi_align(feature_map(n=0), torch.zeros(0, 5), 7, 1.0, 2)
    expect_tensor(out, (0, 3, 7, 7), torch.float32)


@case("roi_align", "empty_rois")
def _():
    x = feature_map().requires_grad_()
    out = ops.roi_align(x, torch.zeros(0, 5), (7, 5), 1.0, -1)
    expect_tensor(out, (0, 3, 7, 5), torch.float32)
    out.sum().backward()
    expect_equal(x.grad, torch.zeros_like(x), "the gradient")


@case("roi_align", "empty_box_list")
def _():
    expect_tensor(ops.roi_align(feature_map(), [], 7, 1.0, 2), (0, 3, 7, 7), torch.float32)


@case("roi_align", "list_of_empty_boxes")
def _():
    expect_tensor(ops.roi_align(feature_map(), [torch.zeros(0, 4)] * 2, 7, 1.0, 2), (0, 3, 7, 7), torch.float32)


def check_batch_index(batch_value, n=2):
    """A batch index naming no image: the call raises naming rois, or that RoI pools zeros
    (as a non-finite coordinate does) and the others are unaffected."""
    x = feature_map(n=n)
    rois = rois_with([batch_value, 1.0, 1.0, 6.0, 6.0])
    bad = 1
    if n == 0:
        rois, bad = rois[1:2], 0

    def check(out):
        expect_tensor(out, (len(rois), 3, 7, 7), torch.float32)
        expect_equal(out[bad], torch.zeros_like(out[bad]), "the RoI of no image")
        if n > 0:
            expect_equal(out[[0, 2]], ops.roi_align(x, rois[[0, 2]], 7, 1.0, 2), "the other RoIs", **ALONE)

    error_or_result(lambda: ops.roi_align(x, rois, 7, 1.0, 2), check, ValueError, "rois")


case("roi_align", "batch_index_out_of_range")(lambda: check_batch_index(2.0))
case("roi_align", "batch_index_huge")(lambda: check_batch_index(1e30))
case("roi_align", "batch_index_negative")(lambda: check_batch_index(-1.0))
case("roi_align", "batch_index_nan")(lambda: check_batch_index(NAN))
case("roi_align", "zero_batch_with_rois")(lambda: check_batch_index(0.0, n=0))


@case("roi_align", "batch_index_fractional")
def _():  # torchvision truncates the index to an int
    x = feature_map()
    rois = rois_with([0.75, 1.0, 1.0, 6.0, 6.0])
    expected = ops.roi_align(x, rois_with([0.0, 1.0, 1.0, 6.0, 6.0]), 7, 1.0, 2)
    expect_equal(ops.roi_align(x, rois, 7, 1.0, 2), expected)


case("roi_align", "int_input", raises=TypeError, names="input")(
    lambda: ops.roi_align(feature_map().long(), rois_with(GOOD_ROIS[0]), 7, 1.0, 2)
)
case("roi_align", "bool_input", raises=TypeError, names="input")(
    lambda: ops.roi_align(feature_map() > 0, rois_with(GOOD_ROIS[0]), 7, 1.0, 2)
)
case("roi_align", "int_rois", raises=TypeError, names="rois")(
    lambda: ops.roi_align(feature_map(), rois_with(GOOD_ROIS[0]).long(), 7, 1.0, 2)
)
case("roi_align", "int_box_list", raises=TypeError, names="rois")(
    lambda: ops.roi_align(feature_map(), [torch.tensor([[1, 1, 6, 6]])], 7, 1.0, 2)
)


@case("roi_align", "mixed_float_dtypes")
def _():  # float64 rois with float32 input: an error naming rois, or the float32 result
    x, rois = feature_map(), rois_with(GOOD_ROIS[0])
    expected = ops.roi_align(x, rois, 7, 1.0, 2)
    error_or_result(
        lambda: ops.roi_align(x, rois.double(), 7, 1.0, 2), lambda out: expect_equal(out, expected), TypeError, "rois"
    )


case("roi_align", "wrong_rank_input", raises=ValueError, names="input")(
    lambda: ops.roi_align(feature_map()[0], rois_with(GOOD_ROIS[0]), 7, 1.0, 2)
)
case("roi_align", "wrong_rank_rois", raises=ValueError, names="boxes")(
    lambda: ops.roi_align(feature_map(), torch.tensor(GOOD_ROIS[0]), 7, 1.0, 2)
)
case("roi_align", "rois_last_dim_4", raises=ValueError, names="boxes")(
    lambda: ops.roi_align(feature_map(), torch.zeros(3, 4), 7, 1.0, 2)
)
case("roi_align", "box_list_last_dim_5", raises=ValueError, names="boxes[1]")(
    lambda: ops.roi_align(feature_map(), [torch.zeros(1, 4), torch.zeros(2, 5)], 7, 1.0, 2)
)
case("roi_align", "boxes_not_a_tensor", raises=TypeError, names="boxes")(
    lambda: ops.roi_align(feature_map(), "boxes", 7, 1.0, 2)
)


@case("roi_align", "meta_device")
def _():
    x = feature_map().to("meta")
    out = ops.roi_align(x, rois_with(GOOD_ROIS[0]).to("meta"), 7, 1.0, 2)
    expect_tensor(out, (3, 3, 7, 7), torch.float32, device="meta")


case("roi_align", "mixed_devices", raises=DEVICE_ERRORS, names=("input", "rois"))(
    lambda: ops.roi_align(feature_map(), rois_with(GOOD_ROIS[0]).to("meta"), 7, 1.0, 2)
)
case("roi_align", "mixed_devices_meta_input", raises=DEVICE_ERRORS, names=("input", "rois"))(
    lambda: ops.roi_align(feature_map().to("meta"), rois_with(GOOD_ROIS[0]), 7, 1.0, 2)
)


@case("roi_align", "non_contiguous")
def _():
    x = feature_map(w=16)[..., ::2]
    rois = torch.cat([rois_with(GOOD_ROIS[0]), torch.zeros(3, 5)], 1)[:, :5]
    expect(not x.is_contiguous() and not rois.is_contiguous(), "inputs not strided as intended")
    expect_equal(ops.roi_align(x, rois, 7, 1.0, -1), ops.roi_align(x.contiguous(), rois.contiguous(), 7, 1.0, -1))


@case("roi_align", "channels_last")
def _():
    x = feature_map()
    xl = x.to(memory_format=torch.channels_last)
    rois = rois_with(GOOD_ROIS[0])
    expect_equal(ops.roi_align(xl, rois, 7, 1.0, -1), ops.roi_align(x, rois, 7, 1.0, -1), rtol=1e-6, atol=1e-6)
    expect_equal(ops.roi_align(xl, rois, 7, 1.0, -1), torchvision_roi_align(x, rois, -1), rtol=1e-5, atol=1e-6)


# RoIAlign (the module): the same op; the cases that reach it through the module.


def roi_align_module(sampling_ratio=2, output_size=7):
    return ops.RoIAlign(output_size, 1.0, sampling_ratio)


case("RoIAlign", "nan_box")(
    lambda: check_bad_roi_pools_zeros(lambda r: roi_align_module()(feature_map(), r), [0, NAN, 1.0, 6.0, 6.0])
)
case("RoIAlign", "posinf_box")(
    lambda: check_bad_roi_pools_zeros(lambda r: roi_align_module(-1)(feature_map(), r), [0, 0.0, 0.0, INF, INF])
)
for _name, _row in HUGE_ADAPTIVE_ROWS:
    case("RoIAlign", _name)(
        lambda row=_row: check_huge_roi_bounded(lambda r: roi_align_module(-1)(feature_map(), r), row, feature_map())
    )
case("RoIAlign", "huge_sampling_ratio", raises=ValueError, names="sampling_ratio")(
    lambda: roi_align_module(2**31)(feature_map(), rois_with(GOOD_ROIS[0]))
)
case("RoIAlign", "huge_output_size", raises=ValueError, names="output_size")(
    lambda: roi_align_module(2, 2**40)(feature_map(), rois_with(GOOD_ROIS[0]))
)
case("RoIAlign", "zero_output_size", raises=ValueError, names="output_size")(
    lambda: roi_align_module(2, 0)(feature_map(), rois_with(GOOD_ROIS[0]))
)
case("RoIAlign", "empty_box_list")(
    lambda: expect_tensor(roi_align_module()(feature_map(), [torch.zeros(0, 4)] * 2), (0, 3, 7, 7), torch.float32)
)
case("RoIAlign", "int_input", raises=TypeError, names="input")(
    lambda: roi_align_module()(feature_map().int(), rois_with(GOOD_ROIS[0]))
)
case("RoIAlign", "wrong_rank_input", raises=ValueError, names="input")(
    lambda: roi_align_module()(feature_map()[None], rois_with(GOOD_ROIS[0]))
)


@case("RoIAlign", "channels_last")
def _():
    x, rois = feature_map(), rois_with(GOOD_ROIS[0])
    xl = x.to(memory_format=torch.channels_last)
    expect_equal(roi_align_module(-1)(xl, rois), roi_align_module(-1)(x, rois), rtol=1e-6, atol=1e-6)


# MultiScaleRoIAlign: two levels, 1/4 and 1/8 of a 64 x 64 image; per-image box lists.
IMAGE_SHAPES = [(64, 64), (64, 64)]
GOOD_BOXES = [[4.0, 4.0, 30.0, 40.0], [2.0, 8.0, 60.0, 50.0]]


def levels(c=3, dtype=torch.float32, sizes=((16, 16), (8, 8))):
    return {f"p{i + 2}": feature_map(c=c, h=h, w=w, dtype=dtype, seed=i) for i, (h, w) in enumerate(sizes)}


def multi_scale(sampling_ratio=2, output_size=7):
    return ops.MultiScaleRoIAlign(["p2", "p3"], output_size, sampling_ratio)


def boxes_with(bad_box):
    """Image 0: a good box and the bad one; image 1: a good box."""
    return [torch.tensor([GOOD_BOXES[0], bad_box]), torch.tensor([GOOD_BOXES[1]])]


def check_multi_scale_bad_box(bad_box, sampling_ratio=2):
    feats = levels()
    pool = multi_scale(sampling_ratio)
    out = pool(feats, boxes_with(bad_box), IMAGE_SHAPES)
    expect_tensor(out, (3, 3, 7, 7), torch.float32)
    expect_equal(out[1], torch.zeros_like(out[1]), "the box with a non-finite coordinate")
    alone = pool(feats, [torch.tensor([GOOD_BOXES[0]]), torch.tensor([GOOD_BOXES[1]])], IMAGE_SHAPES)
    expect_equal(out[[0, 2]], alone, "the other boxes", **ALONE)


def check_multi_scale_huge_box(bad_box, backward=False):
    feats = levels()
    if backward:
        feats = {k: v.requires_grad_() for k, v in feats.items()}
    pool = multi_scale(-1)
    out = pool(feats, boxes_with(bad_box), IMAGE_SHAPES)
    expect_tensor(out, (3, 3, 7, 7), torch.float32)
    expect_finite(out)
    largest = max(float(f.abs().max()) for f in feats.values())
    expect(float(out[1].abs().max()) <= largest, "the huge box pools values beyond the maps'")
    if backward:
        out.sum().backward()
        for name, f in feats.items():
            expect_finite(f.grad, f"the gradient of {name}")


for _name, _box in [
    ("nan_box", [NAN, 4.0, 20.0, 20.0]),
    ("posinf_box", [4.0, 4.0, INF, 20.0]),
    ("neginf_box", [-INF, 4.0, 20.0, 20.0]),
]:
    case("MultiScaleRoIAlign", _name)(lambda box=_box: check_multi_scale_bad_box(box))
    case("MultiScaleRoIAlign", f"{_name}_adaptive")(lambda box=_box: check_multi_scale_bad_box(box, -1))


@case("MultiScaleRoIAlign", "huge_box")
def _():  # fixed sampling grid: torchvision's MultiScaleRoIAlign finishes; its result is the reference
    feats, boxes = levels(), boxes_with([0.0, 0.0, HUGE, HUGE])
    expected = torchvision.ops.MultiScaleRoIAlign(["p2", "p3"], 7, 2)(feats, boxes, IMAGE_SHAPES)
    expect_equal(multi_scale(2)(feats, boxes, IMAGE_SHAPES), expected, rtol=1e-5, atol=1e-6)


for _name, _box in [
    ("huge_box_1e9_adaptive", [0.0, 0.0, 1e9, 1e9]),
    ("huge_box_1e30_adaptive", [0.0, 0.0, HUGE, HUGE]),
    ("neg_huge_box_adaptive", [-HUGE, -HUGE, 40.0, 40.0]),
]:
    case("MultiScaleRoIAlign", _name)(lambda box=_box: check_multi_scale_huge_box(box))
    case("MultiScaleRoIAlign", f"{_name}_backward")(lambda box=_box: check_multi_scale_huge_box(box, backward=True))

case("MultiScaleRoIAlign", "huge_sampling_ratio", raises=ValueError, names="sampling_ratio")(
    lambda: multi_scale(10**6)(levels(), boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
)
case("MultiScaleRoIAlign", "huge_output_size", raises=ValueError, names="output_size")(
    lambda: multi_scale(2, 2**40)(levels(), boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
)
case("MultiScaleRoIAlign", "zero_output_size", raises=ValueError, names="output_size")(
    lambda: multi_scale(2, 0)(levels(), boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
)


@case("MultiScaleRoIAlign", "empty_boxes")
def _():
    feats = {k: v.requires_grad_() for k, v in levels().items()}
    out = multi_scale()(feats, [torch.zeros(0, 4), torch.zeros(0, 4)], IMAGE_SHAPES)
    expect_tensor(out, (0, 3, 7, 7), torch.float32)
    out.sum().backward()
    expect_equal(feats["p2"].grad, torch.zeros(2, 3, 16, 16), "the gradient")


@case("MultiScaleRoIAlign", "zero_size_level")
def _():  # a level with no rows: its boxes pool zeros (every sample off the map)
    feats = levels(sizes=((16, 16), (0, 8)))
    big = [[0.0, 0.0, 63.0, 63.0]]  # maps to the coarsest level
    out = ops.MultiScaleRoIAlign(["p2", "p3"], 7, 2)(feats, [torch.tensor(big), torch.tensor(big)], [(64, 64)] * 2)
    expect_tensor(out, (2, 3, 7, 7), torch.float32)


@case("MultiScaleRoIAlign", "zero_channels")
def _():
    out = multi_scale()(levels(c=0), boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
    expect_tensor(out, (3, 0, 7, 7), torch.float32)


case("MultiScaleRoIAlign", "int_features", raises=TypeError, names="input")(
    lambda: multi_scale()({k: v.long() for k, v in levels().items()}, boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
)
case("MultiScaleRoIAlign", "mixed_level_dtypes", raises=TypeError, names="feature")(
    lambda: multi_scale()(
        {"p2": levels()["p2"], "p3": levels()["p3"].double()}, boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES
    )
)
case("MultiScaleRoIAlign", "mismatched_channels", raises=ValueError, names="feature")(
    lambda: multi_scale()({"p2": levels()["p2"], "p3": levels(c=4)["p3"]}, boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
)
case("MultiScaleRoIAlign", "missing_feature_maps", raises=ValueError, names="x")(
    lambda: multi_scale()({"c5": levels()["p2"]}, boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
)
case("MultiScaleRoIAlign", "no_image_shapes", raises=ValueError, names="image_shapes")(
    lambda: multi_scale()(levels(), boxes_with(GOOD_BOXES[0]), [])
)
case("MultiScaleRoIAlign", "boxes_last_dim_5", raises=ValueError, names="boxes[0]")(
    lambda: multi_scale()(levels(), [torch.zeros(1, 5), torch.zeros(1, 4)], IMAGE_SHAPES)
)
case("MultiScaleRoIAlign", "wrong_rank_features", raises=ValueError, names="feature")(
    lambda: multi_scale()({k: v[0] for k, v in levels().items()}, boxes_with(GOOD_BOXES[0]), IMAGE_SHAPES)
)


@case("MultiScaleRoIAlign", "more_box_lists_than_images")
def _():  # boxes of a third image on a batch of 2: an error naming boxes, or pooled as zeros
    boxes = boxes_with(GOOD_BOXES[0]) + [torch.tensor([GOOD_BOXES[1]])]

    def check(out):
        expect_tensor(out, (4, 3, 7, 7), torch.float32)
        expect_equal(out[3], torch.zeros_like(out[3]), "the box of no image")

    error_or_result(lambda: multi_scale()(levels(), boxes, IMAGE_SHAPES), check, ValueError, "boxes")


@case("MultiScaleRoIAlign", "meta_device")
def _():
    feats = {k: v.to("meta") for k, v in levels().items()}
    out = multi_scale()(feats, [b.to("meta") for b in boxes_with(GOOD_BOXES[0])], IMAGE_SHAPES)
    expect_tensor(out, (3, 3, 7, 7), torch.float32, device="meta")


case("MultiScaleRoIAlign", "mixed_devices", raises=DEVICE_ERRORS, names="rois")(
    lambda: multi_scale()(levels(), [b.to("meta") for b in boxes_with(GOOD_BOXES[0])], IMAGE_SHAPES)
)


@case("MultiScaleRoIAlign", "channels_last")
def _():
    feats = levels()
    last = {k: v.to(memory_format=torch.channels_last) for k, v in feats.items()}
    boxes = boxes_with(GOOD_BOXES[0])
    expect_equal(multi_scale(-1)(last, boxes, IMAGE_SHAPES), multi_scale(-1)(feats, boxes, IMAGE_SHAPES), atol=1e-6)


@case("MultiScaleRoIAlign", "non_contiguous")
def _():
    feats = {k: feature_map(h=v.shape[2], w=2 * v.shape[3], seed=3)[..., ::2] for k, v in levels().items()}
    boxes = [b.t().contiguous().t() for b in boxes_with(GOOD_BOXES[0])]
    dense = {k: v.contiguous() for k, v in feats.items()}
    expect_equal(
        multi_scale(-1)(feats, boxes, IMAGE_SHAPES),
        multi_scale(-1)(dense, [b.contiguous() for b in boxes], IMAGE_SHAPES),
    )


# --- NMS family -----------------------------------------------------------------------------
# 6 boxes, distinct scores; boxes 0/1 and 3/4 overlap (IoU > 0.5). Documented (nms.py):
# NaN or infinite coordinates or scores raise naming the argument; results are torchvision's
# (hard NMS) or the Soft-NMS reference's.

NMS_BOXES = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [40, 0, 50, 10], [41, 0, 51, 10], [0, 40, 5, 45]]
NMS_SCORES = [0.9, 0.8, 0.7, 0.6, 0.95, 0.3]
NMS_IDXS = [0, 0, 1, 1, 1, 0]


def detections(dtype=torch.float32):
    return torch.tensor(NMS_BOXES, dtype=dtype), torch.tensor(NMS_SCORES, dtype=dtype)


def with_value(t, index, value):
    t = t.clone()
    t[index] = value
    return t


def nms_call(op, boxes, scores, idxs=None, **kwargs):
    """Calls one of the four NMS ops; batched ones get idxs (default NMS_IDXS)."""
    if op in ("batched_nms", "batched_soft_nms"):
        idxs = torch.tensor(NMS_IDXS) if idxs is None else idxs
        return getattr(ops, op)(boxes, scores, idxs, **({"iou_threshold": 0.5} | kwargs))
    return getattr(ops, op)(boxes, scores, **({"iou_threshold": 0.5} | kwargs))


def nms_expected(op, boxes, scores, idxs=None, **kwargs):
    """torchvision's hard NMS, the Soft-NMS reference (float64) otherwise."""
    idxs = torch.tensor(NMS_IDXS) if idxs is None else idxs
    dtype = torch.promote_types(boxes.dtype, scores.dtype)  # torchvision wants one dtype
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    if op == "nms":
        return torchvision.ops.nms(boxes, scores, 0.5)
    if op == "batched_nms":
        return torchvision.ops.boxes._batched_nms_vanilla(boxes, scores, idxs, 0.5)
    kwargs = {"iou_threshold": 0.5} | kwargs
    if op == "soft_nms":
        return _reference.soft_nms_reference(boxes, scores, **kwargs)
    return _reference.batched_soft_nms_reference(boxes, scores, idxs, **kwargs)


def check_nms_result(op, boxes, scores, idxs=None, **kwargs):
    got = nms_call(op, boxes, scores, idxs, **kwargs)
    expected = nms_expected(op, boxes, scores, idxs, **kwargs)
    if op in ("nms", "batched_nms"):
        expect_tensor(got, expected.shape, torch.int64)
        expect_equal(got, expected, "kept indices")
        return
    keep, new_scores = got
    expect_tensor(keep, expected[0].shape, torch.int64)
    expect_tensor(new_scores, expected[0].shape, scores.dtype)
    expect_equal(keep, expected[0], "kept indices")
    expect_equal(new_scores.double(), expected[1], "new scores", rtol=1e-6, atol=0)


NMS_OPS = ("nms", "batched_nms", "soft_nms", "batched_soft_nms")

for _op in NMS_OPS:
    for _name, _value in [("nan", NAN), ("posinf", INF), ("neginf", -INF)]:
        case(_op, f"{_name}_box", raises=ValueError, names="boxes")(
            lambda op=_op, v=_value: nms_call(op, with_value(detections()[0], (2, 1), v), detections()[1])
        )
        case(_op, f"{_name}_score", raises=ValueError, names="scores")(
            lambda op=_op, v=_value: nms_call(op, detections()[0], with_value(detections()[1], 3, v))
        )

    @case(_op, "huge_box")
    def _(op=_op):  # float64: areas of 1e30 boxes are finite, the result is the reference's
        boxes, scores = detections(torch.float64)
        boxes = torch.cat([boxes, torch.tensor([[0.0, 0.0, HUGE, HUGE], [0.0, 0.0, HUGE, 0.9 * HUGE]])])
        scores = torch.cat([scores, torch.tensor([0.5, 0.4], dtype=torch.float64)])
        check_nms_result(op, boxes, scores, torch.tensor(NMS_IDXS + [1, 1]))

    @case(_op, "huge_box_float32")
    def _(op=_op):
        # float32: the areas of 1e30 boxes overflow; the IoU is then 0, as torchvision's nms
        # (a NaN IoU suppresses nothing): both huge boxes are kept, undecayed.
        boxes, scores = detections()
        huge = torch.tensor([[0.0, 0.0, HUGE, HUGE], [-HUGE, -HUGE, HUGE, HUGE]])
        boxes, scores = torch.cat([boxes, huge]), torch.cat([scores, torch.tensor([0.5, 0.4])])
        idxs = torch.tensor(NMS_IDXS + [1, 1])
        got = nms_call(op, boxes, scores, idxs)
        keep = got if op in ("nms", "batched_nms") else got[0]
        expect(6 in keep.tolist() and 7 in keep.tolist(), f"a huge box was suppressed: kept {keep.tolist()}")
        if op == "nms":
            expect_equal(keep, torchvision.ops.nms(boxes, scores, 0.5), "kept indices (torchvision's)")
        if op == "batched_nms":
            expect_equal(keep, torchvision.ops.boxes._batched_nms_vanilla(boxes, scores, idxs, 0.5), "kept indices")
        if op in ("soft_nms", "batched_soft_nms"):
            new = dict(zip(got[0].tolist(), got[1].tolist()))
            expect(new[6] == scores[6].item() and new[7] == scores[7].item(), f"huge boxes decayed: {new}")

    @case(_op, "huge_score")
    def _(op=_op):
        boxes, scores = detections(torch.float64)
        check_nms_result(op, boxes, with_value(with_value(scores, 1, HUGE), 2, -HUGE))

    @case(_op, "empty")
    def _(op=_op):
        got = nms_call(op, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
        if op in ("nms", "batched_nms"):
            expect_tensor(got, (0,), torch.int64)
        else:
            expect_tensor(got[0], (0,), torch.int64)
            expect_tensor(got[1], (0,), torch.float32)

    case(_op, "int_boxes", raises=TypeError, names="boxes")(
        lambda op=_op: nms_call(op, detections()[0].long(), detections()[1])
    )
    case(_op, "bool_boxes", raises=TypeError, names="boxes")(
        lambda op=_op: nms_call(op, detections()[0] > 5, detections()[1])
    )
    case(_op, "int_scores", raises=TypeError, names="scores")(
        lambda op=_op: nms_call(op, detections()[0], (detections()[1] * 100).long())
    )

    @case(_op, "mixed_float_dtypes")
    def _(op=_op):  # documented: computed in float64 when either is float64; scores' dtype out
        boxes, scores = detections()
        check_nms_result(op, boxes, scores.double())
        check_nms_result(op, boxes.double(), scores)

    @case(_op, "half_inputs")
    def _(op=_op):  # documented: half types computed in float32
        boxes, scores = detections()
        got = nms_call(op, boxes.half(), scores.bfloat16())
        expected = nms_call(op, boxes, scores.bfloat16().float())
        if op in ("nms", "batched_nms"):
            expect_equal(got, expected)
        else:
            expect_equal(got[0], expected[0])
            expect_tensor(got[1], expected[1].shape, torch.bfloat16)

    case(_op, "wrong_rank_boxes", raises=ValueError, names="boxes")(
        lambda op=_op: nms_call(op, detections()[0].flatten(), detections()[1])
    )
    case(_op, "boxes_last_dim_5", raises=ValueError, names="boxes")(
        lambda op=_op: nms_call(op, torch.zeros(6, 5), detections()[1])
    )
    case(_op, "scores_2d", raises=ValueError, names="scores")(
        lambda op=_op: nms_call(op, detections()[0], detections()[1][:, None])
    )
    case(_op, "mismatched_lengths", raises=ValueError, names="scores")(
        lambda op=_op: nms_call(op, detections()[0], detections()[1][:4])
    )
    case(_op, "nan_iou_threshold", raises=ValueError, names="iou_threshold")(
        lambda op=_op: nms_call(op, *detections(), iou_threshold=NAN)
    )
    case(_op, "meta_device", raises=(ValueError, RuntimeError), names="boxes")(
        lambda op=_op: nms_call(op, *(t.to("meta") for t in detections()), torch.tensor(NMS_IDXS).to("meta"))
    )
    case(_op, "mixed_devices", raises=DEVICE_ERRORS, names=("boxes", "scores"))(
        lambda op=_op: nms_call(op, detections()[0], detections()[1].to("meta"))
    )

    @case(_op, "non_contiguous")
    def _(op=_op):
        boxes, scores = detections()
        strided_boxes = boxes.t().contiguous().t()
        strided_scores = torch.stack([scores, scores], 1)[:, 0]
        expect(not strided_boxes.is_contiguous() and not strided_scores.is_contiguous(), "not strided as intended")
        got, expected = nms_call(op, strided_boxes, strided_scores), nms_call(op, boxes, scores)
        for a, b in zip(
            got if isinstance(got, tuple) else [got], expected if isinstance(expected, tuple) else [expected]
        ):
            expect_equal(a, b)


for _op in ("batched_nms", "batched_soft_nms"):
    case(_op, "float_idxs", raises=TypeError, names="idxs")(
        lambda op=_op: nms_call(op, *detections(), torch.tensor(NMS_IDXS).float())
    )
    case(_op, "bool_idxs", raises=TypeError, names="idxs")(
        lambda op=_op: nms_call(op, *detections(), torch.tensor(NMS_IDXS).bool())
    )
    case(_op, "idxs_2d", raises=ValueError, names="idxs")(
        lambda op=_op: nms_call(op, *detections(), torch.tensor(NMS_IDXS)[:, None])
    )
    case(_op, "idxs_wrong_length", raises=ValueError, names="idxs")(
        lambda op=_op: nms_call(op, *detections(), torch.tensor(NMS_IDXS[:3]))
    )
    case(_op, "idxs_mixed_devices", raises=DEVICE_ERRORS, names="idxs")(
        lambda op=_op: nms_call(op, *detections(), torch.tensor(NMS_IDXS).to("meta"))
    )

    @case(_op, "idxs_extreme_values")
    def _(op=_op):  # any integer is a category: negative, huge, int32
        boxes, scores = detections(torch.float64)
        for idxs in ([-5, -5, 2**62, 2**62, 2**62, -(2**63)], [3, 3, -1, -1, -1, 0]):
            check_nms_result(op, boxes, scores, torch.tensor(idxs))
        check_nms_result(op, boxes, scores, torch.tensor(NMS_IDXS, dtype=torch.int32))


for _op in ("soft_nms", "batched_soft_nms"):
    for _name, _kwargs, _arg in [
        ("zero_sigma", {"sigma": 0.0}, "sigma"),
        ("nan_sigma", {"sigma": NAN}, "sigma"),
        ("nan_score_threshold", {"score_threshold": NAN}, "score_threshold"),
        ("unknown_method", {"method": "cubic"}, "method"),
        ("bad_offset", {"offset": 0.5}, "offset"),
    ]:
        case(_op, _name, raises=ValueError, names=_arg)(lambda op=_op, kw=_kwargs: nms_call(op, *detections(), **kw))

    @case(_op, "all_below_score_threshold")
    def _(op=_op):
        boxes, scores = detections()
        keep, new_scores = nms_call(op, boxes, scores, score_threshold=2.0)
        expect_tensor(keep, (0,), torch.int64)
        expect_tensor(new_scores, (0,), torch.float32)


# --- mask_pool_concat -----------------------------------------------------------------------
# roi_features [3, 2, 4, 4], mask_logits [3, 5, 8, 8], labels [3]. Documented: the reference
# composition cat(roi_features, max_pool2d(sigmoid(mask_logits[arange(N), labels]), 2, 2))
# (NaN wins a window, as in max_pool2d), its Table 4 variants, and their gradients.


def mask_inputs(n=3, c=2, s=4, k=5, m=8, dtype=torch.float32):
    features = torch.randn(n, c, s, s, generator=generator(1)).to(dtype)
    logits = (4 * torch.randn(n, k, m, m, generator=generator(2))).to(dtype)
    labels = torch.tensor([1, 4, 0, 2, 3] * (n // 5 + 1))[:n]
    return features, logits, labels


def check_mask_pool(features, logits, labels, mode="concat", backward=False):
    f = features.clone().requires_grad_(backward)
    lg = logits.clone().requires_grad_(backward)
    got = ops.mask_pool_concat(f, lg, labels, mode)
    rf = features.clone().requires_grad_(backward)
    rl = logits.clone().requires_grad_(backward)
    expected = _reference.mask_pool_concat(rf, rl, labels, mode)
    expect_tensor(got, expected.shape, features.dtype)
    expect_equal(got, expected, rtol=1e-6, atol=1e-7)
    if backward:
        grad = torch.randn(expected.shape, generator=generator(3))
        got.backward(grad)
        expected.backward(grad)
        expect_equal(lg.grad, rl.grad, "the mask_logits gradient", rtol=1e-6, atol=1e-7)
        expect_equal(f.grad, rf.grad, "the roi_features gradient", rtol=1e-6, atol=1e-7)


for _name, _value in [("nan", NAN), ("posinf", INF), ("neginf", -INF), ("huge", HUGE), ("neg_huge", -HUGE)]:

    @case("mask_pool_concat", f"{_name}_logit")
    def _(value=_value):
        features, logits, labels = mask_inputs()
        logits[0, 1, 2, 3] = value  # RoI 0's label is 1: its window (1, 1)
        logits[1, :, 0, :] = value  # a whole row of RoI 1, every class
        for mode in ("concat", "multiply", "concat_all"):
            check_mask_pool(features, logits, labels, mode)

    @case("mask_pool_concat", f"{_name}_logit_backward")
    def _(value=_value):
        features, logits, labels = mask_inputs()
        logits[0, 1, 2, 3] = value
        for mode in ("concat", "multiply", "concat_all"):
            check_mask_pool(features, logits, labels, mode, backward=True)

    @case("mask_pool_concat", f"{_name}_feature")
    def _(value=_value):
        features, logits, labels = mask_inputs()
        features[2, 1, 3, 0] = value
        for mode in ("concat", "multiply", "concat_all"):
            check_mask_pool(features, logits, labels, mode, backward=True)


for _name, _labels in [
    ("label_too_large", [1, 5, 0]),
    ("label_negative", [1, -1, 0]),
    ("label_huge", [1, 2**62, 0]),
]:
    case("mask_pool_concat", _name, raises=ValueError, names="labels")(
        lambda lab=_labels: ops.mask_pool_concat(*mask_inputs()[:2], torch.tensor(lab))
    )
    case("mask_pool_concat", f"{_name}_backward", raises=ValueError, names="labels")(
        lambda lab=_labels: torch.ops.msrcnn._mask_pool_concat_backward(
            torch.zeros(3, 3, 4, 4), mask_inputs()[1], torch.tensor(lab), None, "concat"
        )
    )

case("mask_pool_concat", "labels_int32", raises=TypeError, names="labels")(
    lambda: ops.mask_pool_concat(*mask_inputs()[:2], mask_inputs()[2].int())
)
case("mask_pool_concat", "labels_float", raises=TypeError, names="labels")(
    lambda: ops.mask_pool_concat(*mask_inputs()[:2], mask_inputs()[2].float())
)
case("mask_pool_concat", "labels_missing", raises=ValueError, names="labels")(
    lambda: ops.mask_pool_concat(*mask_inputs()[:2], None)
)
case("mask_pool_concat", "labels_wrong_length", raises=ValueError, names="labels")(
    lambda: ops.mask_pool_concat(*mask_inputs()[:2], mask_inputs()[2][:2])
)
case("mask_pool_concat", "labels_2d", raises=ValueError, names="labels")(
    lambda: ops.mask_pool_concat(*mask_inputs()[:2], mask_inputs()[2][:, None])
)


@case("mask_pool_concat", "empty")
def _():
    for mode, channels in (("concat", 3), ("multiply", 2), ("concat_all", 7)):
        out = ops.mask_pool_concat(*mask_inputs(n=0), mode)
        expect_tensor(out, (0, channels, 4, 4), torch.float32)


@case("mask_pool_concat", "zero_channels")
def _():  # Table 4e: the mask alone
    check_mask_pool(*mask_inputs(c=0), "concat", backward=True)
    check_mask_pool(*mask_inputs(c=0), "concat_all")


@case("mask_pool_concat", "one_class_no_labels")
def _():  # K == 1: the class is already selected, labels unused
    features, logits, _ = mask_inputs(k=1)
    check_mask_pool(features, logits, None)


case("mask_pool_concat", "zero_classes", raises=ValueError, names="mask_logits")(
    lambda: ops.mask_pool_concat(*mask_inputs(k=0)[:2], None)
)
case("mask_pool_concat", "zero_size_features", raises=ValueError, names="roi_features")(
    lambda: ops.mask_pool_concat(*mask_inputs(s=0, m=0))
)
case("mask_pool_concat", "zero_size_mask", raises=ValueError, names="mask_logits")(
    lambda: ops.mask_pool_concat(*mask_inputs(m=0))
)
case("mask_pool_concat", "mask_not_a_multiple", raises=ValueError, names="mask_logits")(
    lambda: ops.mask_pool_concat(*mask_inputs(m=9))
)
case("mask_pool_concat", "mismatched_rois", raises=ValueError, names="mask_logits")(
    lambda: ops.mask_pool_concat(mask_inputs()[0], mask_inputs(n=4)[1], mask_inputs()[2])
)
case("mask_pool_concat", "int_features", raises=TypeError, names="roi_features")(
    lambda: ops.mask_pool_concat(mask_inputs()[0].long(), *mask_inputs()[1:])
)
case("mask_pool_concat", "bool_logits", raises=TypeError, names="mask_logits")(
    lambda: ops.mask_pool_concat(mask_inputs()[0], mask_inputs()[1] > 0, mask_inputs()[2])
)
case("mask_pool_concat", "mixed_float_dtypes", raises=TypeError, names=("roi_features", "mask_logits"))(
    lambda: ops.mask_pool_concat(mask_inputs()[0].double(), *mask_inputs()[1:])
)
case("mask_pool_concat", "wrong_rank_features", raises=ValueError, names="roi_features")(
    lambda: ops.mask_pool_concat(mask_inputs()[0][0], *mask_inputs()[1:])
)
case("mask_pool_concat", "wrong_rank_logits", raises=ValueError, names="mask_logits")(
    lambda: ops.mask_pool_concat(mask_inputs()[0], mask_inputs()[1][:, 0], mask_inputs()[2])
)
case("mask_pool_concat", "unknown_mode", raises=ValueError, names="mode")(
    lambda: ops.mask_pool_concat(*mask_inputs(), "add")
)


@case("mask_pool_concat", "meta_device")
def _():
    out = ops.mask_pool_concat(*(t.to("meta") for t in mask_inputs()))
    expect_tensor(out, (3, 3, 4, 4), torch.float32, device="meta")


case("mask_pool_concat", "mixed_devices", raises=DEVICE_ERRORS, names=("roi_features", "mask_logits"))(
    lambda: ops.mask_pool_concat(mask_inputs()[0], mask_inputs()[1].to("meta"), mask_inputs()[2])
)
case("mask_pool_concat", "mixed_devices_labels", raises=DEVICE_ERRORS, names="labels")(
    lambda: ops.mask_pool_concat(*mask_inputs()[:2], mask_inputs()[2].to("meta"))
)


@case("mask_pool_concat", "non_contiguous")
def _():
    features, logits, labels = mask_inputs()
    strided_features = features.transpose(2, 3).contiguous().transpose(2, 3)
    strided_logits = torch.cat([logits, logits], 1)[:, ::2]
    strided_labels = torch.stack([labels, labels], 1)[:, 0]
    for mode in ("concat", "multiply", "concat_all"):
        check_mask_pool(strided_features, strided_logits, strided_labels, mode, backward=True)


@case("mask_pool_concat", "channels_last")
def _():
    features, logits, labels = mask_inputs()
    for mode in ("concat", "multiply", "concat_all"):
        check_mask_pool(
            features.to(memory_format=torch.channels_last),
            logits.to(memory_format=torch.channels_last),
            labels,
            mode,
            backward=True,
        )


# --- maskiou_targets ------------------------------------------------------------------------
# gt_masks [2, 16, 20] bool, proposals [3, 4], matched_idxs [3], mask_logits [3, 8, 8].
# Documented: the reference's mask targets (torchvision's project_masks_on_boxes) and
# maskiou; a proposal with a non-finite coordinate gets a zero target and maskiou 0.

RESOLUTION = 8
PROPOSALS = [[1.0, 1.0, 9.0, 9.0], [4.0, 2.0, 18.0, 14.0], [0.0, 0.0, 20.0, 16.0]]


def maskiou_inputs(height=16, width=20, gts=2, dtype=torch.float32):
    masks = torch.zeros(gts, height, width, dtype=torch.bool)
    if gts > 0 and height > 0 and width > 0:
        masks[0, 2:8, 3:9] = True
        masks[-1, 5:14, 6:17] = True
    proposals = torch.tensor(PROPOSALS, dtype=dtype)
    matched = torch.tensor([0, gts - 1, 0]).clamp(min=0)
    logits = torch.randn(3, RESOLUTION, RESOLUTION, generator=generator(4))
    return masks, proposals, matched, logits


def check_maskiou(masks, proposals, matched, logits, zero_rows=()):
    targets, maskiou = ops.maskiou_targets(masks, proposals, matched, logits, RESOLUTION)
    n = proposals.shape[0]
    expect_tensor(targets, (n, RESOLUTION, RESOLUTION), proposals.dtype)
    expect_tensor(maskiou, (n,), proposals.dtype)
    expect_finite(targets, "mask_targets")
    expect_finite(maskiou, "maskiou")
    good = [i for i in range(n) if i not in zero_rows]
    for i in zero_rows:
        expect_equal(targets[i], torch.zeros_like(targets[i]), f"mask target of proposal {i}")
        expect_equal(maskiou[i], torch.zeros_like(maskiou[i]), f"maskiou of proposal {i}")
    if good:
        expected = _reference.maskiou_targets(masks, proposals[good], matched[good], logits[good], RESOLUTION)
        expect_equal(targets[good], expected[0], "mask targets", rtol=1e-5, atol=1e-6)
        expect_equal(maskiou[good], expected[1], "maskiou", rtol=1e-5, atol=1e-6)
    return targets, maskiou


for _name, _value in [("nan", NAN), ("posinf", INF), ("neginf", -INF)]:

    @case("maskiou_targets", f"{_name}_box")
    def _(value=_value):
        masks, proposals, matched, logits = maskiou_inputs()
        proposals[1, 2] = value
        check_maskiou(masks, proposals, matched, logits, zero_rows=(1,))


@case("maskiou_targets", "infinite_box")
def _():  # [-inf, -inf, inf, inf] covers the image: zero target (roi_align of it), maskiou 0
    masks, proposals, matched, logits = maskiou_inputs()
    proposals[0] = torch.tensor([-INF, -INF, INF, INF])
    check_maskiou(masks, proposals, matched, logits, zero_rows=(0,))


def check_maskiou_huge(box, by_element=False):
    """Bounded work; targets in [0, 1], maskiou in [0, 1]; the other proposals unaffected."""
    masks, proposals, matched, logits = maskiou_inputs()
    proposals[1] = torch.tensor(box)
    if by_element:  # the CUDA kernels' element bodies, run one after another on the CPU
        targets, maskiou = torch.ops.msrcnn_testing.maskiou_targets_by_element(
            [masks], [proposals], [matched], logits, False, False
        )
    else:
        targets, maskiou = ops.maskiou_targets(masks, proposals, matched, logits, RESOLUTION)
    expect_tensor(targets, (3, RESOLUTION, RESOLUTION), torch.float32)
    expect(bool(((targets >= 0) & (targets <= 1)).all()), "mask targets outside [0, 1]")
    expect(bool(((maskiou >= 0) & (maskiou <= 1)).all()), f"maskiou outside [0, 1]: {maskiou.tolist()}")
    expected = _reference.maskiou_targets(masks, proposals[[0, 2]], matched[[0, 2]], logits[[0, 2]], RESOLUTION)
    expect_equal(targets[[0, 2]], expected[0], "the other proposals' targets", rtol=1e-5, atol=1e-6)
    expect_equal(maskiou[[0, 2]], expected[1], "the other proposals' maskiou", rtol=1e-5, atol=1e-6)


for _name, _box in [
    ("huge_box", [0.0, 0.0, HUGE, HUGE]),
    ("huge_box_1e9", [0.0, 0.0, 1e9, 1e9]),
    ("neg_huge_box", [-HUGE, -HUGE, 10.0, 10.0]),
]:
    case("maskiou_targets", _name)(lambda box=_box: check_maskiou_huge(box))
    case("maskiou_targets", f"{_name}_cuda_algorithm")(lambda box=_box: check_maskiou_huge(box, by_element=True))


for _name, _value in [("nan", NAN), ("posinf", INF), ("neginf", -INF), ("huge", HUGE)]:

    @case("maskiou_targets", f"{_name}_logit")
    def _(value=_value):  # the prediction is logit > 0: NaN is background
        masks, proposals, matched, logits = maskiou_inputs()
        logits[1, 2:5, 3] = value
        check_maskiou(masks, proposals, matched, logits)


for _name, _matched in [
    ("matched_too_large", [0, 2, 0]),
    ("matched_negative", [0, -1, 0]),
    ("matched_huge", [2**62, 0, 0]),
]:
    case("maskiou_targets", _name, raises=ValueError, names="matched_idxs")(
        lambda m=_matched: ops.maskiou_targets(*maskiou_inputs()[:2], torch.tensor(m), maskiou_inputs()[3], RESOLUTION)
    )

case("maskiou_targets", "no_gt_masks", raises=ValueError, names="gt_masks")(
    lambda: ops.maskiou_targets(*maskiou_inputs(gts=0), RESOLUTION)
)


@case("maskiou_targets", "empty")
def _():
    targets, maskiou = ops.maskiou_targets(
        torch.zeros(0, 16, 20, dtype=torch.bool),
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, RESOLUTION, RESOLUTION),
        RESOLUTION,
    )
    expect_tensor(targets, (0, RESOLUTION, RESOLUTION), torch.float32)
    expect_tensor(maskiou, (0,), torch.float32)


for _name, _size in [("zero_height_image", (0, 20)), ("zero_width_image", (16, 0))]:

    @case("maskiou_targets", _name)
    def _(size=_size):  # no pixels: zero targets, maskiou 0
        check_maskiou(*maskiou_inputs(*size), zero_rows=(0, 1, 2))


case("maskiou_targets", "zero_resolution", raises=ValueError, names="resolution")(
    lambda: ops.maskiou_targets(*maskiou_inputs()[:3], torch.zeros(3, 0, 0), 0)
)
case("maskiou_targets", "huge_resolution", raises=ValueError, names="mask_logits")(
    lambda: ops.maskiou_targets(*maskiou_inputs(), 2**40)
)
case("maskiou_targets", "float_gt_masks", raises=TypeError, names="gt_masks[0]")(
    lambda: ops.maskiou_targets(maskiou_inputs()[0].float(), *maskiou_inputs()[1:], RESOLUTION)
)
case("maskiou_targets", "half_proposals", raises=TypeError, names="proposals[0]")(
    lambda: ops.maskiou_targets(maskiou_inputs()[0], maskiou_inputs()[1].half(), *maskiou_inputs()[2:], RESOLUTION)
)
case("maskiou_targets", "int_proposals", raises=TypeError, names="proposals[0]")(
    lambda: ops.maskiou_targets(maskiou_inputs()[0], maskiou_inputs()[1].long(), *maskiou_inputs()[2:], RESOLUTION)
)
case("maskiou_targets", "int32_matched_idxs", raises=TypeError, names="matched_idxs[0]")(
    lambda: ops.maskiou_targets(*maskiou_inputs()[:2], maskiou_inputs()[2].int(), maskiou_inputs()[3], RESOLUTION)
)
case("maskiou_targets", "int_logits", raises=TypeError, names="mask_logits")(
    lambda: ops.maskiou_targets(*maskiou_inputs()[:3], maskiou_inputs()[3].long(), RESOLUTION)
)
case("maskiou_targets", "wrong_rank_gt_masks", raises=ValueError, names="gt_masks[0]")(
    lambda: ops.maskiou_targets(maskiou_inputs()[0][0], *maskiou_inputs()[1:], RESOLUTION)
)
case("maskiou_targets", "proposals_last_dim_5", raises=ValueError, names="proposals[0]")(
    lambda: ops.maskiou_targets(maskiou_inputs()[0], torch.zeros(3, 5), *maskiou_inputs()[2:], RESOLUTION)
)
case("maskiou_targets", "matched_wrong_length", raises=ValueError, names="matched_idxs[0]")(
    lambda: ops.maskiou_targets(*maskiou_inputs()[:2], torch.tensor([0, 1]), maskiou_inputs()[3], RESOLUTION)
)
case("maskiou_targets", "logits_wrong_count", raises=ValueError, names="mask_logits")(
    lambda: ops.maskiou_targets(*maskiou_inputs()[:3], maskiou_inputs()[3][:2], RESOLUTION)
)
case("maskiou_targets", "logits_wrong_size", raises=ValueError, names="mask_logits")(
    lambda: ops.maskiou_targets(*maskiou_inputs(), RESOLUTION + 1)
)


@case("maskiou_targets", "meta_device")
def _():
    targets, maskiou = ops.maskiou_targets(*(t.to("meta") for t in maskiou_inputs()), RESOLUTION)
    expect_tensor(targets, (3, RESOLUTION, RESOLUTION), torch.float32, device="meta")
    expect_tensor(maskiou, (3,), torch.float32, device="meta")


case("maskiou_targets", "mixed_devices", raises=DEVICE_ERRORS, names=("mask_logits", "proposals"))(
    lambda: ops.maskiou_targets(maskiou_inputs()[0], maskiou_inputs()[1].to("meta"), *maskiou_inputs()[2:], RESOLUTION)
)
case("maskiou_targets", "mixed_devices_logits", raises=DEVICE_ERRORS, names="mask_logits")(
    lambda: ops.maskiou_targets(*maskiou_inputs()[:3], maskiou_inputs()[3].to("meta"), RESOLUTION)
)


@case("maskiou_targets", "non_contiguous")
def _():
    masks, proposals, matched, logits = maskiou_inputs()
    strided = (
        masks.transpose(1, 2).contiguous().transpose(1, 2),
        proposals.t().contiguous().t(),
        torch.stack([matched, matched], 1)[:, 0],
        logits.transpose(1, 2).contiguous().transpose(1, 2),
    )
    expect(not any(t.is_contiguous() for t in strided), "not strided as intended")
    check_maskiou(*strided)


@case("maskiou_targets", "uint8_masks_and_4d_logits")
def _():  # documented alternatives: uint8 masks (non-zero = foreground), [N, 1, M, M] logits
    masks, proposals, matched, logits = maskiou_inputs()
    got = ops.maskiou_targets((masks * 7).to(torch.uint8), proposals, matched, logits[:, None], RESOLUTION)
    expected = ops.maskiou_targets(masks, proposals, matched, logits, RESOLUTION)
    expect_equal(got, expected)


def two_images():
    a = maskiou_inputs()
    b = maskiou_inputs(height=12, width=9, gts=1, dtype=torch.float32)
    return [a[0], b[0]], [a[1], b[1]], [a[2], b[2]], torch.cat([a[3], b[3]])


@case("maskiou_targets_batched", "nan_box")
def _():
    masks, proposals, matched, logits = two_images()
    proposals[1] = proposals[1].clone()
    proposals[1][2, 0] = NAN
    targets, maskiou = ops.maskiou_targets_batched(masks, proposals, matched, logits, RESOLUTION)
    expect_tensor(targets, (6, RESOLUTION, RESOLUTION), torch.float32)
    expect_equal(targets[5], torch.zeros_like(targets[5]), "the NaN proposal's target")
    expect_equal(maskiou[5], torch.zeros_like(maskiou[5]), "the NaN proposal's maskiou")
    for i, rows in ((0, slice(0, 3)), (1, slice(3, 5))):
        n = 3 if i == 0 else 2
        expected = _reference.maskiou_targets(masks[i], proposals[i][:n], matched[i][:n], logits[rows], RESOLUTION)
        expect_equal(targets[rows], expected[0], f"image {i}'s targets", rtol=1e-5, atol=1e-6)


@case("maskiou_targets_batched", "huge_box")
def _():
    masks, proposals, matched, logits = two_images()
    proposals[0] = proposals[0].clone()
    proposals[0][0] = torch.tensor([-HUGE, -HUGE, HUGE, HUGE])
    targets, maskiou = ops.maskiou_targets_batched(masks, proposals, matched, logits, RESOLUTION)
    expect_finite(targets)
    expect(bool(((maskiou >= 0) & (maskiou <= 1)).all()), f"maskiou outside [0, 1]: {maskiou.tolist()}")


case("maskiou_targets_batched", "matched_out_of_range", raises=ValueError, names="matched_idxs[1]")(
    lambda: ops.maskiou_targets_batched(
        two_images()[0], two_images()[1], [two_images()[2][0], torch.tensor([0, 1, 0])], two_images()[3], RESOLUTION
    )
)
case("maskiou_targets_batched", "no_images", raises=ValueError, names="gt_masks")(
    lambda: ops.maskiou_targets_batched([], [], [], torch.zeros(0, RESOLUTION, RESOLUTION), RESOLUTION)
)
case("maskiou_targets_batched", "mismatched_lists", raises=ValueError, names="matched_idxs")(
    lambda: ops.maskiou_targets_batched(
        two_images()[0], two_images()[1], two_images()[2][:1], two_images()[3], RESOLUTION
    )
)
case("maskiou_targets_batched", "mixed_proposal_dtypes", raises=TypeError, names="proposals")(
    lambda: ops.maskiou_targets_batched(
        two_images()[0], [two_images()[1][0], two_images()[1][1].double()], two_images()[2], two_images()[3], RESOLUTION
    )
)
case("maskiou_targets_batched", "gt_masks_not_a_list", raises=TypeError, names="gt_masks")(
    lambda: ops.maskiou_targets_batched(two_images()[0][0], *two_images()[1:], RESOLUTION)
)
case("maskiou_targets_batched", "matched_idxs_not_a_list", raises=TypeError, names="matched_idxs")(
    lambda: ops.maskiou_targets_batched(*two_images()[:2], torch.tensor([0, 1, 0, 0, 0]), two_images()[3], RESOLUTION)
)


@case("maskiou_targets_batched", "logits_as_list")
def _():
    masks, proposals, matched, logits = two_images()
    got = ops.maskiou_targets_batched(masks, proposals, matched, [logits[:3], logits[3:]], RESOLUTION)
    expect_equal(got, ops.maskiou_targets_batched(masks, proposals, matched, logits, RESOLUTION))


@case("maskiou_targets_batched", "empty_images")
def _():
    masks = [torch.zeros(0, 5, 5, dtype=torch.bool), torch.zeros(1, 0, 0, dtype=torch.bool)]
    targets, maskiou = ops.maskiou_targets_batched(
        masks, [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.int64)] * 2, [], RESOLUTION
    )
    expect_tensor(targets, (0, RESOLUTION, RESOLUTION), torch.float32)
    expect_tensor(maskiou, (0,), torch.float32)


# --- paste_masks ----------------------------------------------------------------------------
# masks [3, 1, 8, 8] probabilities, boxes [3, 4] in a 24 x 32 image. Documented: torchvision's
# paste_masks_in_image(...)[:, 0] > threshold; boxes wholly outside the image and boxes with a
# NaN coordinate paste nothing; coordinates are clamped to +-2^40.

PASTE_BOXES = [[2.0, 3.0, 12.0, 15.0], [10.0, 0.0, 31.0, 20.0], [-4.0, 18.0, 6.0, 30.0]]
IMAGE = (24, 32)


def paste_inputs(n=3, m=8, dtype=torch.float32):
    masks = torch.rand(n, 1, m, m, generator=generator(5)).to(dtype)
    boxes = torch.tensor((PASTE_BOXES * (n // 3 + 1))[:n])
    return masks, boxes


def check_paste(masks, boxes, image_size=IMAGE, threshold=0.5, padding=1):
    got = ops.paste_masks(masks, boxes, image_size, threshold, padding)
    expect_tensor(got, (masks.shape[0], *image_size), torch.bool)
    expected = _reference.paste_masks(masks.float(), boxes, image_size, threshold, padding)
    expect_equal(got, expected)
    return got


def check_paste_by_element(masks, boxes, image_size=IMAGE, padding=1):
    """The CPU kernel's result, also for float64 masks against the CUDA kernel's element body
    (run on the CPU). Only float64: in float32 the resize's source index of a resized mask
    wider than 2^23 pixels (a huge box or padding) is coarse, and rounds differently where the
    CPU kernel fuses multiply-adds."""
    got = ops.paste_masks(masks, boxes, image_size, 0.5, padding)
    expect_tensor(got, (masks.shape[0], *image_size), torch.bool)
    wide = masks.double()
    by_element = torch.ops.msrcnn_testing.paste_masks_by_element(wide, boxes, *image_size, 0.5, padding)
    expect_equal(ops.paste_masks(wide, boxes, image_size, 0.5, padding), by_element, "CPU kernel vs CUDA body")
    return got


@case("paste_masks", "nan_box")
def _():
    masks, boxes = paste_inputs()
    boxes[1, 3] = NAN
    got = check_paste_by_element(masks, boxes)
    expect(not got[1].any(), "the NaN box pasted something")
    expect_equal(got[[0, 2]], check_paste(masks[[0, 2]], boxes[[0, 2]]), "the other masks")


@case("paste_masks", "infinite_box")
def _():  # clamped to +-2^40: the image lies in the middle of the resized mask, all foreground
    masks = torch.ones(2, 1, 8, 8)
    boxes = torch.tensor([[-INF, -INF, INF, INF], [0.0, 0.0, INF, INF]])
    got = check_paste_by_element(masks, boxes)
    expect(bool(got[0].all()), "an all-ones mask over the whole plane did not paste everywhere")


@case("paste_masks", "neginf_box")
def _():  # wholly outside the image: nothing
    masks, boxes = paste_inputs()
    boxes[0] = torch.tensor([-INF, -INF, -INF, 5.0])
    got = check_paste_by_element(masks, boxes)
    expect(not got[0].any(), "a box outside the image pasted something")


@case("paste_masks", "huge_box")
def _():
    masks, boxes = paste_inputs()
    boxes[0] = torch.tensor([0.0, 0.0, HUGE, HUGE])
    boxes[1] = torch.tensor([-HUGE, -HUGE, HUGE, HUGE])
    boxes[2] = torch.tensor([-HUGE, -HUGE, -0.5 * HUGE, -0.5 * HUGE])
    got = check_paste_by_element(masks, boxes)
    expect(not got[2].any(), "a box outside the image pasted something")


@case("paste_masks", "huge_box_float64")
def _():
    masks, boxes = paste_inputs()
    boxes = boxes.double()
    boxes[0] = torch.tensor([0.0, 0.0, 1e300, 1e300])
    boxes[1] = torch.tensor([-1e308, -1e308, 1e308, 1e308])
    check_paste_by_element(masks, boxes)


for _name, _value in [("nan", NAN), ("posinf", INF), ("neginf", -INF), ("huge", HUGE)]:

    @case("paste_masks", f"{_name}_mask_value")
    def _(value=_value):  # torchvision's composition: interpolate then > threshold
        masks, boxes = paste_inputs()
        masks[0, 0, 3, 4] = value
        masks[1, 0, 0, :] = value
        check_paste(masks, boxes)


@case("paste_masks", "nan_threshold", raises=ValueError, names="threshold")
def _():
    ops.paste_masks(*paste_inputs(), IMAGE, NAN)


@case("paste_masks", "infinite_thresholds")
def _():  # > inf: nothing; > -inf: the pasted region, as the composition
    check_paste(*paste_inputs(), threshold=INF)
    check_paste(*paste_inputs(), threshold=-INF)


for _name, _size in [("zero_image_size", (0, 0)), ("zero_image_height", (0, 32)), ("zero_image_width", (24, 0))]:

    @case("paste_masks", _name)
    def _(size=_size):
        expect_tensor(ops.paste_masks(*paste_inputs(), size), (3, *size), torch.bool)


for _name, _size in [("negative_image_size", (-1, 32)), ("huge_image_size", (2**40, 2**40))]:
    case("paste_masks", _name, raises=ValueError, names="image_size")(
        lambda size=_size: ops.paste_masks(*paste_inputs(), size)
    )
case("paste_masks", "image_size_three_values", raises=ValueError, names="image_size")(
    lambda: ops.paste_masks(*paste_inputs(), (24, 32, 3))
)
case("paste_masks", "image_size_floats", raises=TypeError, names="image_size")(
    lambda: ops.paste_masks(*paste_inputs(), (24.5, 32.0))
)
case("paste_masks", "negative_padding", raises=ValueError, names="padding")(
    lambda: ops.paste_masks(*paste_inputs(), IMAGE, 0.5, -1)
)
case("paste_masks", "huge_padding", raises=ValueError, names="padding")(
    lambda: ops.paste_masks(*paste_inputs(), IMAGE, 0.5, 2**62)
)


@case("paste_masks", "large_padding")
def _():  # bounded memory: no padded-mask table of (M + 2 padding) rows
    masks, boxes = paste_inputs()
    got = check_paste_by_element(masks, boxes, padding=10**7)
    expect_tensor(got, (3, *IMAGE), torch.bool)


@case("paste_masks", "empty")
def _():
    expect_tensor(ops.paste_masks(torch.zeros(0, 1, 8, 8), torch.zeros(0, 4), IMAGE), (0, *IMAGE), torch.bool)


case("paste_masks", "zero_size_masks", raises=ValueError, names="masks")(
    lambda: ops.paste_masks(torch.zeros(3, 1, 0, 0), paste_inputs()[1], IMAGE)
)
case("paste_masks", "int_masks", raises=TypeError, names="masks")(
    lambda: ops.paste_masks((paste_inputs()[0] * 255).to(torch.uint8), paste_inputs()[1], IMAGE)
)
case("paste_masks", "int_boxes", raises=TypeError, names="boxes")(
    lambda: ops.paste_masks(paste_inputs()[0], paste_inputs()[1].long(), IMAGE)
)
case("paste_masks", "half_boxes", raises=TypeError, names="boxes")(
    lambda: ops.paste_masks(paste_inputs()[0], paste_inputs()[1].half(), IMAGE)
)
case("paste_masks", "wrong_rank_masks", raises=ValueError, names="masks")(
    lambda: ops.paste_masks(paste_inputs()[0][0, 0], paste_inputs()[1], IMAGE)
)
case("paste_masks", "two_channel_masks", raises=ValueError, names="masks")(
    lambda: ops.paste_masks(paste_inputs()[0].expand(3, 2, 8, 8), paste_inputs()[1], IMAGE)
)
case("paste_masks", "non_square_masks", raises=ValueError, names="masks")(
    lambda: ops.paste_masks(paste_inputs()[0][..., :6], paste_inputs()[1], IMAGE)
)
case("paste_masks", "boxes_last_dim_5", raises=ValueError, names="boxes")(
    lambda: ops.paste_masks(paste_inputs()[0], torch.zeros(3, 5), IMAGE)
)
case("paste_masks", "mismatched_lengths", raises=ValueError, names="boxes")(
    lambda: ops.paste_masks(paste_inputs()[0], paste_inputs()[1][:2], IMAGE)
)


@case("paste_masks", "three_dim_masks_and_half")
def _():  # documented: [N, M, M] masks; any floating dtype
    masks, boxes = paste_inputs()
    expect_equal(ops.paste_masks(masks[:, 0], boxes, IMAGE), ops.paste_masks(masks, boxes, IMAGE))
    check_paste(masks.half(), boxes)


@case("paste_masks", "meta_device")
def _():
    out = ops.paste_masks(*(t.to("meta") for t in paste_inputs()), IMAGE)
    expect_tensor(out, (3, *IMAGE), torch.bool, device="meta")


case("paste_masks", "mixed_devices", raises=DEVICE_ERRORS, names=("masks", "boxes"))(
    lambda: ops.paste_masks(paste_inputs()[0], paste_inputs()[1].to("meta"), IMAGE)
)
case("paste_masks", "mixed_devices_meta_masks", raises=DEVICE_ERRORS, names=("masks", "boxes"))(
    lambda: ops.paste_masks(paste_inputs()[0].to("meta"), paste_inputs()[1], IMAGE)
)


@case("paste_masks", "non_contiguous")
def _():
    masks, boxes = paste_inputs()
    strided_masks = masks.transpose(2, 3).contiguous().transpose(2, 3)
    strided_boxes = boxes.t().contiguous().t()
    expect(not strided_masks.is_contiguous() and not strided_boxes.is_contiguous(), "not strided as intended")
    check_paste(strided_masks, strided_boxes)
    check_paste(masks.to(memory_format=torch.channels_last), boxes)


# --- conv3x3 (ops.conv3x3, msrcnn::conv3x3) and its backward ops ----------------------------
# input [2, 3, 6, 6], weight [4, 3, 3, 3], bias [4]. Documented: relu?(conv2d(input, weight,
# bias, stride, padding=1)), channels-last output. "conv3x3" is ops.conv3x3 with relu=True,
# "conv3x3_op" torch.ops.msrcnn.conv3x3 itself with relu=False. A non-finite input value makes
# non-finite outputs only in its reach: the outputs whose 3x3 window holds it and, on the
# Winograd path (the CPU's at stride 1), the rest of their 2x2 output tiles.

CONV_OPS = ("conv3x3", "conv3x3_op")


def conv_inputs(n=2, cin=3, cout=4, h=6, w=6, dtype=torch.float32):
    x = torch.randn(n, cin, h, w, generator=generator(6)).to(dtype)
    weight = (0.3 * torch.randn(cout, cin, 3, 3, generator=generator(7))).to(dtype)
    bias = (0.1 * torch.randn(cout, generator=generator(8))).to(dtype)
    return x, weight, bias


def conv_relu(op):
    return op == "conv3x3"


def conv_reference(x, weight, bias, stride=1, relu=True):
    """relu?(conv2d(x, weight, bias, stride, padding=1)) in float64; also where ATen's conv2d
    refuses or returns no channels (empty maps, no input channels)."""
    n, cin, h, w = x.shape
    shape = (n, weight.shape[0], (h - 1) // stride + 1, (w - 1) // stride + 1)
    if 0 in shape:
        return torch.zeros(shape, dtype=x.dtype)
    if cin == 0:  # the sum over no channels: the bias alone
        out = torch.zeros(shape, dtype=torch.float64) + (0 if bias is None else bias.double()[:, None, None])
    else:
        out = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), stride, 1)
    return (torch.relu(out) if relu else out).to(x.dtype)


def conv_call(op, x, weight, bias, stride=1):
    if op == "conv3x3":
        return ops.conv3x3(x, weight, bias, stride, relu=True)
    return torch.ops.msrcnn.conv3x3(x, weight, bias, stride, False)


def reach(mask, stride=1):
    """Outputs whose 3x3 window (padding 1) holds a True of `mask` [N, H, W]; and those
    widened to whole 2x2 output tiles (the Winograd path's reach)."""
    direct = F.max_pool2d(mask[:, None].double(), 3, stride, 1)[:, 0] > 0
    n, h, w = direct.shape
    padded = F.pad(direct[:, None].double(), (0, w % 2, 0, h % 2))
    tiles = F.max_pool2d(padded, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)[:, 0, :h, :w] > 0
    return direct, tiles


def check_conv_nonfinite(op, value, where="input"):
    x, weight, bias = conv_inputs()
    bad = torch.zeros(2, 6, 6, dtype=torch.bool)
    if where == "input":
        x[0, 1, 2, 3] = value
        bad[0, 2, 3] = True
    got = conv_call(op, x, weight, bias)
    expect_tensor(got, (2, 4, 6, 6), torch.float32)
    direct, tiles = reach(bad)
    outside = ~tiles[:, None].expand_as(got)
    expected = conv_reference(torch.where(torch.isfinite(x), x, torch.zeros_like(x)), weight, bias, relu=conv_relu(op))
    expect_equal(got[outside], expected[outside], "outputs out of the value's reach", rtol=1e-5, atol=1e-5)
    inside = got[direct[:, None].expand_as(got)]
    if value != value:  # NaN: NaN wherever it is read (relu keeps NaN, as torch.relu)
        expect(bool(inside.isnan().all()), "a NaN input was lost in its reach")
    elif not conv_relu(op):  # an infinity: non-finite wherever it is read
        expect(not bool(inside.isfinite().any()), "an infinite input was lost in its reach")


for _op in CONV_OPS:
    for _name, _value in [("nan", NAN), ("posinf", INF), ("neginf", -INF)]:
        case(_op, f"{_name}_input")(lambda op=_op, v=_value: check_conv_nonfinite(op, v))

    for _name, _value in [("huge", HUGE), ("neg_huge", -HUGE)]:

        @case(_op, f"{_name}_input")
        def _(op=_op, value=_value):  # finite: the direct conv's result, to the output's scale
            x, weight, bias = conv_inputs()
            x[1, 0, 4, 1] = value
            got = conv_call(op, x, weight, bias)
            expect_finite(got)
            expected = conv_reference(x, weight, bias, relu=conv_relu(op))
            expect_equal(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))

    @case(_op, "nan_weight")
    def _(op=_op):  # NaN weights of output channel 1: that channel is NaN everywhere
        x, weight, bias = conv_inputs()
        weight[1, 2, 0, 0] = NAN
        got = conv_call(op, x, weight, bias)
        expect(bool(got[:, 1].isnan().all()), "output channel 1 is not all NaN")
        expected = conv_reference(x, weight, bias, relu=conv_relu(op))
        expect_equal(got[:, [0, 2, 3]], expected[:, [0, 2, 3]], rtol=1e-5, atol=1e-5)

    @case(_op, "nan_bias")
    def _(op=_op):
        x, weight, bias = conv_inputs()
        bias[2] = NAN
        got = conv_call(op, x, weight, bias)
        expect(bool(got[:, 2].isnan().all()), "output channel 2 is not all NaN")
        expect_equal(got, conv_reference(x, weight, bias, relu=conv_relu(op)), rtol=1e-5, atol=1e-5)

    for _name, _shape in [
        ("zero_batch", {"n": 0}),
        ("zero_height", {"h": 0}),
        ("zero_width", {"w": 0}),
        ("zero_in_channels", {"cin": 0}),
        ("zero_out_channels", {"cout": 0}),
    ]:
        for _stride in (1, 2):

            @case(_op, _name if _stride == 1 else f"{_name}_stride_2")
            def _(op=_op, shape=_shape, stride=_stride):
                x, weight, bias = conv_inputs(**shape)
                got = conv_call(op, x, weight, bias, stride)
                expected = conv_reference(x, weight, bias, stride, relu=conv_relu(op))
                expect_tensor(got, expected.shape, torch.float32)
                expect_equal(got, expected, rtol=1e-5, atol=1e-5)

    case(_op, "int_input", raises=TypeError, names="input")(
        lambda op=_op: conv_call(op, *(t.long() for t in conv_inputs()))
    )
    case(_op, "bool_input", raises=TypeError, names="input")(
        lambda op=_op: conv_call(op, conv_inputs()[0] > 0, *conv_inputs()[1:])
    )
    case(_op, "mixed_float_dtypes", raises=TypeError, names="weight")(
        lambda op=_op: conv_call(op, conv_inputs()[0], conv_inputs()[1].double(), conv_inputs()[2])
    )
    case(_op, "mixed_bias_dtype", raises=TypeError, names="bias")(
        lambda op=_op: conv_call(op, *conv_inputs()[:2], conv_inputs()[2].double())
    )
    case(_op, "wrong_rank_input", raises=ValueError, names="input")(
        lambda op=_op: conv_call(op, conv_inputs()[0][0], *conv_inputs()[1:])
    )
    case(_op, "weight_5x5", raises=ValueError, names="weight")(
        lambda op=_op: conv_call(op, conv_inputs()[0], torch.zeros(4, 3, 5, 5), conv_inputs()[2])
    )
    case(_op, "weight_wrong_in_channels", raises=ValueError, names="weight")(
        lambda op=_op: conv_call(op, conv_inputs()[0], torch.zeros(4, 2, 3, 3), conv_inputs()[2])
    )
    case(_op, "bias_wrong_shape", raises=ValueError, names="bias")(
        lambda op=_op: conv_call(op, *conv_inputs()[:2], torch.zeros(5))
    )
    for _stride in (3, 0, -1):
        case(_op, f"stride_{_stride}".replace("-", "minus_"), raises=ValueError, names="stride")(
            lambda op=_op, s=_stride: conv_call(op, *conv_inputs(), s)
        )
    # the fake kernel (meta tensors) checks as the CPU kernel does
    case(_op, "weight_5x5_meta", raises=ValueError, names="weight")(
        lambda op=_op: conv_call(op, *(t.to("meta") for t in (conv_inputs()[0], torch.zeros(4, 3, 5, 5))), None)
    )
    case(_op, "int_input_meta", raises=TypeError, names="input")(
        lambda op=_op: conv_call(op, *(t.long().to("meta") for t in conv_inputs()))
    )
    case(_op, "stride_3_meta", raises=ValueError, names="stride")(
        lambda op=_op: conv_call(op, *(t.to("meta") for t in conv_inputs()), 3)
    )

    @case(_op, "stride_2_hostile")
    def _(op=_op):  # the ATen path: NaN in its reach, the rest the reference's
        x, weight, bias = conv_inputs(h=7, w=5)
        x[1, 2, 6, 4] = NAN
        got = conv_call(op, x, weight, bias, 2)
        expected = conv_reference(x, weight, bias, 2, relu=conv_relu(op))
        expect_tensor(got, expected.shape, torch.float32)
        expect_equal(got, expected, rtol=1e-5, atol=1e-5)

    @case(_op, "float64_and_half")
    def _(op=_op):
        x, weight, bias = conv_inputs(dtype=torch.float64)
        expected = conv_reference(x, weight, bias, relu=conv_relu(op))
        expect_equal(conv_call(op, x, weight, bias), expected, rtol=1e-12, atol=1e-12)
        for dtype in (torch.bfloat16, torch.float16):
            x, weight, bias = conv_inputs(dtype=dtype)
            got = conv_call(op, x, weight, bias)
            expect_tensor(got, (2, 4, 6, 6), dtype)
            expect_equal(got, conv_reference(x, weight, bias, relu=conv_relu(op)), rtol=2e-2, atol=2e-2)

    @case(_op, "meta_device")
    def _(op=_op):
        got = conv_call(op, *(t.to("meta") for t in conv_inputs()))
        expect_tensor(got, (2, 4, 6, 6), torch.float32, device="meta")
        got = conv_call(op, *(t.to("meta") for t in conv_inputs(h=7, w=5)), 2)
        expect_tensor(got, (2, 4, 4, 3), torch.float32, device="meta")

    case(_op, "mixed_devices", raises=DEVICE_ERRORS, names=("input", "weight"))(
        lambda op=_op: conv_call(op, conv_inputs()[0], conv_inputs()[1].to("meta"), conv_inputs()[2])
    )
    case(_op, "mixed_devices_meta_input", raises=DEVICE_ERRORS, names=("input", "weight"))(
        lambda op=_op: conv_call(op, conv_inputs()[0].to("meta"), *conv_inputs()[1:])
    )
    case(_op, "mixed_devices_bias", raises=DEVICE_ERRORS, names="bias")(
        lambda op=_op: conv_call(op, *conv_inputs()[:2], conv_inputs()[2].to("meta"))
    )

    @case(_op, "non_contiguous")
    def _(op=_op):
        x, weight, bias = conv_inputs(w=12)
        x = x[..., ::2]
        weight = weight.transpose(0, 1).contiguous().transpose(0, 1)
        bias = torch.stack([bias, bias], 1)[:, 0]
        expect(not x.is_contiguous() and not weight.is_contiguous() and not bias.is_contiguous(), "not strided")
        expected = conv_reference(x, weight, bias, relu=conv_relu(op))
        expect_equal(conv_call(op, x, weight, bias), expected, rtol=1e-5, atol=1e-5)

    @case(_op, "channels_last")
    def _(op=_op):
        x, weight, bias = conv_inputs()
        got = conv_call(op, x.to(memory_format=torch.channels_last), weight.to(memory_format=torch.channels_last), bias)
        expect(got.is_contiguous(memory_format=torch.channels_last), "the output is not channels-last")
        expect_equal(got, conv_reference(x, weight, bias, relu=conv_relu(op)), rtol=1e-5, atol=1e-5)

    for _stride in (1, 2):

        @case(_op, "backward_nan_input" if _stride == 1 else "backward_nan_input_stride_2")
        def _(op=_op, stride=_stride):  # finite gradients out of the NaN's reach; the weight gradient reads it: NaN
            x, weight, bias = conv_inputs()
            x[0, 0, 0, 0] = NAN
            leaves = [t.requires_grad_() for t in (x, weight, bias)]
            conv_call(op, *leaves, stride).sum().backward()
            expect_tensor(x.grad, (2, 3, 6, 6), torch.float32)
            expect_finite(x.grad[1], "the input gradient of the other image")
            expect_finite(bias.grad, "the bias gradient")
            expect(bool(weight.grad.isnan().any()), "the weight gradient did not read the NaN")


@case("conv3x3", "autocast_mixed_dtypes")
def _():  # ops.conv3x3 computes in the autocast dtype, as F.conv2d does
    x, weight, bias = conv_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ops.conv3x3(x, weight.bfloat16(), bias, relu=True)
    expect_tensor(got, (2, 4, 6, 6), torch.bfloat16)
    expect_equal(got, conv_reference(x, weight, bias).bfloat16(), rtol=2e-2, atol=2e-2)


# The backward ops, called directly (the autograd formula above calls them with consistent
# arguments): grad [2, 4, 6, 6] (stride 1) or [2, 4, 3, 3] (stride 2) of an input [2, 3, 6, 6].

BACKWARD_OPS = {
    "_conv3x3_backward_input": lambda grad, weight, x, stride=1: torch.ops.msrcnn._conv3x3_backward_input(
        grad, weight, stride, x.shape[2], x.shape[3]
    ),
    "_conv3x3_backward_weight": lambda grad, weight, x, stride=1: torch.ops.msrcnn._conv3x3_backward_weight(
        grad, x, stride
    ),
}


def backward_inputs(stride=1, n=2, dtype=torch.float32):
    x, weight, _ = conv_inputs(n=n, dtype=dtype)
    grad = torch.randn(n, 4, 6 // stride, 6 // stride, generator=generator(9)).to(dtype)
    return grad, weight, x


def backward_reference(op, grad, weight, x, stride=1):
    """The op's result in float64 by ATen's convolution gradients."""
    if op == "_conv3x3_backward_input":
        return torch.nn.grad.conv2d_input(x.shape, weight.double(), grad.double(), stride, 1)
    grad_weight = torch.nn.grad.conv2d_weight(x.double(), weight.shape, grad.double(), stride, 1)
    return grad_weight, grad.double().sum((0, 2, 3))


for _op, _call in BACKWARD_OPS.items():
    for _stride in (1, 2):

        @case(_op, f"nan_grad_stride_{_stride}")
        def _(op=_op, call=_call, stride=_stride):
            grad, weight, x = backward_inputs(stride)
            grad[1, 2, 1, 1] = NAN
            got = call(grad, weight, x, stride)
            if op == "_conv3x3_backward_input":  # the NaN reaches the inputs its output read
                expect_tensor(got, x.shape, torch.float32)
                expect_finite(got[0], "the input gradient of the other image")
                expect(bool(got[1].isnan().any()), "the NaN gradient was lost")
            else:  # every weight of output channel 2 and its bias read it
                grad_weight, grad_bias = got
                expect(bool(grad_weight[2].isnan().all() and grad_bias[2].isnan()), "channel 2 is not all NaN")
                expected = backward_reference(op, grad, weight, x, stride)
                keep = [0, 1, 3]
                expect_equal(grad_weight[keep].double(), expected[0][keep], rtol=1e-5, atol=1e-5)

        @case(_op, f"zero_batch_stride_{_stride}")
        def _(op=_op, call=_call, stride=_stride):
            grad, weight, x = backward_inputs(stride, n=0)
            got = call(grad, weight, x, stride)
            if op == "_conv3x3_backward_input":
                expect_tensor(got, x.shape, torch.float32)
            else:
                expect_tensor(got[0], weight.shape, torch.float32)
                expect_equal(got[0], torch.zeros_like(got[0]), "the weight gradient of no pixels")
                expect_equal(got[1], torch.zeros(4), "the bias gradient of no pixels")

        @case(_op, f"float64_stride_{_stride}")
        def _(op=_op, call=_call, stride=_stride):
            grad, weight, x = backward_inputs(stride, dtype=torch.float64)
            got = call(grad, weight, x, stride)
            expect_equal(got, backward_reference(op, grad, weight, x, stride), rtol=1e-12, atol=1e-12)

    case(_op, "stride_3", raises=ValueError, names="stride")(lambda call=_call: call(*backward_inputs(), stride=3))
    case(_op, "grad_size_mismatch", raises=ValueError, names="grad")(
        lambda call=_call: call(*backward_inputs(), stride=2)  # a stride-1 gradient at stride 2
    )
    case(_op, "wrong_rank_grad", raises=ValueError, names="grad")(
        lambda call=_call: call(backward_inputs()[0][0], *backward_inputs()[1:])
    )
    case(_op, "int_grad", raises=TypeError, names="grad")(
        lambda call=_call: call(*(t.long() for t in backward_inputs()))
    )

    @case(_op, "meta_device")
    def _(op=_op, call=_call):
        got = call(*(t.to("meta") for t in backward_inputs(2)), stride=2)
        shapes = [(2, 3, 6, 6)] if op == "_conv3x3_backward_input" else [(4, 3, 3, 3), (4,)]
        for t, shape in zip(got if isinstance(got, tuple) else [got], shapes):
            expect_tensor(t, shape, torch.float32, device="meta")


case("_conv3x3_backward_input", "mixed_dtypes", raises=TypeError, names="weight")(
    lambda: BACKWARD_OPS["_conv3x3_backward_input"](backward_inputs()[0], *(t.double() for t in backward_inputs()[1:]))
)
case("_conv3x3_backward_input", "weight_wrong_out_channels", raises=ValueError, names="weight")(
    lambda: BACKWARD_OPS["_conv3x3_backward_input"](backward_inputs()[0], torch.zeros(5, 3, 3, 3), backward_inputs()[2])
)
case("_conv3x3_backward_weight", "mixed_dtypes", raises=TypeError, names="input")(
    lambda: BACKWARD_OPS["_conv3x3_backward_weight"](backward_inputs()[0], *(t.double() for t in backward_inputs()[1:]))
)
case("_conv3x3_backward_weight", "input_batch_mismatch", raises=ValueError, names="grad")(
    lambda: BACKWARD_OPS["_conv3x3_backward_weight"](*backward_inputs()[:2], backward_inputs(n=3)[2])
)


# --- the harness's own probes (tests/ops/test_hostile_inputs.py) ---------------------------


@PROBES.case("probe", "hang")
def _():
    import time

    time.sleep(60)


@PROBES.case("probe", "segfault")
def _():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


@PROBES.case("probe", "abort")
def _():
    import os

    os.abort()


@PROBES.case("probe", "exit_without_verdict")
def _():
    import os

    os._exit(3)


@PROBES.case("probe", "wrong_result")
def _():
    expect_equal(torch.zeros(2), torch.ones(2))


@PROBES.case("probe", "unnamed_argument", raises=ValueError, names="boxes")
def _():
    raise ValueError("something is wrong")


@PROBES.case("probe", "missing_error", raises=ValueError, names="boxes")
def _():
    return torch.zeros(1)


@PROBES.case("probe", "imports_this_checkout")
def _():
    import msrcnn_fast

    expected = __file__.rsplit("/tests/", 1)[0]
    expect(msrcnn_fast.__file__.startswith(expected), f"the child imported {msrcnn_fast.__file__}, not {expected}")


# --- the matrix -----------------------------------------------------------------------------


def main() -> int:
    """Runs every case (or those whose key holds a word of sys.argv) and prints the matrix."""
    import time

    patterns = sys.argv[1:]
    keys = [k for k in CASES if not patterns or any(p in k for p in patterns)]
    start = time.monotonic()
    failed = 0
    for key in keys:
        outcome = run_case(__name__, "CASES", key)
        failed += not outcome.ok
        detail = outcome.detail.splitlines()[0] if outcome.detail else ""
        print(f"{CASES[key].op:24s} {CASES[key].name:36s} {outcome.verdict:5s} {outcome.seconds:5.2f}s  {detail[:220]}")
    print(f"{len(keys)} cases, {failed} not ok, {time.monotonic() - start:.1f} s", file=sys.stderr)
    return 1 if failed else 0
