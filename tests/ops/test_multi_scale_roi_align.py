"""The fused multi-level RoIAlign against torchvision.ops.MultiScaleRoIAlign.

Tolerances as in test_roi_align.py (float32 coordinates: 1e-4 absolute).
"""

from collections import OrderedDict

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from msrcnn_fast import ops
from tests.ops.roi_data import (
    boxes_far_larger_than,
    check_huge_box_results,
    huge_box_cases,
    pool_with_every_engine,
    random_boxes,
    roi_align_on_map,
    run_in_child,
    to_payload,
)

ATOL32 = 1e-4
IMAGE = (96, 128)  # (height, width) of the largest image


def make_features(batch=2, channels=10, dtype=torch.float32, levels=(2, 3, 4, 5), seed=0, extra=True):
    """FPN-like maps of strides 2^level for IMAGE, plus an unused map (as torchvision's example)."""
    g = torch.Generator().manual_seed(seed)
    maps = OrderedDict()
    for level in levels:
        maps[f"p{level}"] = torch.randn(batch, channels, IMAGE[0] // 2**level, IMAGE[1] // 2**level, generator=g).to(
            dtype
        )
        if extra and level == levels[0]:
            maps["unused"] = torch.randn(batch, channels, 3, 3, generator=g).to(dtype)
    return maps


def make_boxes(counts=(30, 25), seed=1, dtype=torch.float32):
    """Boxes of every size from a few pixels to the whole image, so that all levels are used."""
    g = torch.Generator().manual_seed(seed)
    return [random_boxes(n, IMAGE[0], IMAGE[1], g, max_size=120).to(dtype) for n in counts]


def pooler_pair(output_size=7, sampling_ratio=2, names=("p2", "p3", "p4", "p5"), **kwargs):
    return (
        ops.MultiScaleRoIAlign(list(names), output_size, sampling_ratio, **kwargs),
        torchvision.ops.MultiScaleRoIAlign(list(names), output_size, sampling_ratio, **kwargs),
    )


def image_shapes(batch=2):
    return [IMAGE, (IMAGE[0] - 10, IMAGE[1] - 30)][:batch]


@pytest.mark.parametrize("output_size,sampling_ratio", [(7, 2), (14, 2), ((7, 5), -1), (4, 1)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_matches_torchvision(cpu_capability, output_size, sampling_ratio, layout):
    x = make_features()
    if layout == "nhwc":
        x = OrderedDict((k, v.contiguous(memory_format=torch.channels_last)) for k, v in x.items())
    boxes = make_boxes()
    ours, theirs = pooler_pair(output_size, sampling_ratio)
    expected = theirs(x, boxes, image_shapes())
    actual = ours(x, boxes, image_shapes())
    assert ours.scales == theirs.scales == [0.25, 0.125, 0.0625, 0.03125]
    torch.testing.assert_close(actual, expected, atol=ATOL32, rtol=0)


@pytest.mark.parametrize("canonical_scale,canonical_level", [(224, 4), (112, 3), (64, 5)])
def test_canonical_level_options(canonical_scale, canonical_level):
    x = make_features()
    boxes = make_boxes()
    ours, theirs = pooler_pair(canonical_scale=canonical_scale, canonical_level=canonical_level)
    torch.testing.assert_close(ours(x, boxes, image_shapes()), theirs(x, boxes, image_shapes()), atol=ATOL32, rtol=0)


def test_level_boundaries():
    """Boxes of exactly canonical size and powers of two of it, where the level changes."""
    x = make_features()
    sides = [7.0, 14.0, 27.99, 28.0, 56.0, 112.0, 224.0, 223.9, 448.0, 1.0, 0.0]
    boxes = [torch.tensor([[5.0, 5.0, 5.0 + s, 5.0 + s] for s in sides]), torch.zeros(0, 4)]
    ours, theirs = pooler_pair()
    torch.testing.assert_close(ours(x, boxes, image_shapes()), theirs(x, boxes, image_shapes()), atol=ATOL32, rtol=0)


def test_negative_area_boxes_give_zeros_like_torchvision():
    x = make_features()
    boxes = [torch.tensor([[30.0, 5.0, 10.0, 40.0], [5.0, 5.0, 40.0, 40.0]]), torch.tensor([[5.0, 30.0, 40.0, 20.0]])]
    ours, theirs = pooler_pair()
    actual = ours(x, boxes, image_shapes())
    torch.testing.assert_close(actual, theirs(x, boxes, image_shapes()), atol=ATOL32, rtol=0)
    assert not actual[0].any() and not actual[2].any() and actual[1].any()


def test_single_level():
    x = make_features(levels=(3,))
    boxes = make_boxes()
    ours, theirs = pooler_pair(names=("p3",))
    torch.testing.assert_close(ours(x, boxes, image_shapes()), theirs(x, boxes, image_shapes()), atol=ATOL32, rtol=0)


def test_non_consecutive_levels():
    """Maps at strides 4 and 16 only: torchvision indexes levels from k_min; so do we."""
    x = make_features(levels=(2, 4))
    boxes = make_boxes()
    ours, theirs = pooler_pair(names=("p2", "p4"))
    torch.testing.assert_close(ours(x, boxes, image_shapes()), theirs(x, boxes, image_shapes()), atol=ATOL32, rtol=0)


def test_scales_are_inferred_once_and_kept():
    x = make_features()
    boxes = make_boxes()
    ours, theirs = pooler_pair()
    ours(x, boxes, image_shapes())
    theirs(x, boxes, image_shapes())
    smaller = [(40, 50), (30, 60)]
    torch.testing.assert_close(ours(x, boxes, smaller), theirs(x, boxes, smaller), atol=ATOL32, rtol=0)
    assert ours.scales == theirs.scales


def test_no_boxes_and_empty_images():
    x = make_features()
    ours, theirs = pooler_pair()
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    assert ours(x, empty, image_shapes()).shape == (0, 10, 7, 7)
    boxes = [torch.zeros(0, 4), make_boxes()[1]]
    torch.testing.assert_close(ours(x, boxes, image_shapes()), theirs(x, boxes, image_shapes()), atol=ATOL32, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(dtype):
    x = make_features(dtype=dtype)
    boxes = make_boxes()
    ours, theirs = pooler_pair()
    actual = ours(x, boxes, image_shapes())
    assert actual.dtype == dtype
    if dtype == torch.float64:
        expected = theirs(x, [b.double() for b in boxes], image_shapes())
        torch.testing.assert_close(actual, expected, atol=1e-10, rtol=0)
    else:
        expected = theirs(OrderedDict((k, v.float()) for k, v in x.items()), boxes, image_shapes())
        eps = 2**-11 if dtype == torch.float16 else 2**-8
        torch.testing.assert_close(actual.float(), expected, atol=ATOL32, rtol=2 * eps)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_gradients_match_torchvision(cpu_capability, layout, sampling_ratio):
    x = make_features(dtype=torch.float64)
    if layout == "nhwc":
        x = OrderedDict((k, v.contiguous(memory_format=torch.channels_last)) for k, v in x.items())
    boxes = [b.double() for b in make_boxes()]
    ours, theirs = pooler_pair(sampling_ratio=sampling_ratio)
    xo = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    xt = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    out = ours(xo, boxes, image_shapes())
    grad_out = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    out.backward(grad_out)
    theirs(xt, boxes, image_shapes()).backward(grad_out)
    for name in ("p2", "p3", "p4", "p5"):
        torch.testing.assert_close(xo[name].grad, xt[name].grad, atol=1e-10, rtol=0)
        assert xo[name].grad.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
    assert xo["unused"].grad is None


def test_gradcheck():
    x = [torch.randn(2, 2, 8 // 2**i, 10 // 2**i, dtype=torch.float64).requires_grad_() for i in range(3)]
    rois = torch.tensor(
        [[0, 1.0, 1.0, 4.0, 5.0], [1, 0.0, 2.0, 30.0, 29.0], [1, 3.0, 1.0, 12.0, 14.0], [0, -2.0, 1.0, 9.0, 40.0]],
        dtype=torch.float64,
    )

    def pool(*maps):
        return ops.multi_level_roi_align(list(maps), rois, 3, [1.0, 0.5, 0.25], 2, False, 16, 2)

    assert torch.autograd.gradcheck(pool, tuple(x))


def test_one_kernel_for_all_levels():
    """The forward is one msrcnn op call: no per-level roi_align, gather or scatter."""
    x = make_features()
    boxes = make_boxes()
    ours, _ = pooler_pair()
    with torch.profiler.profile() as prof:
        ours(x, boxes, image_shapes())
    names = [e.name for e in prof.events()]
    assert names.count("msrcnn::multi_level_roi_align") == 1
    assert not any(n in names for n in ("aten::index", "aten::index_put_", "aten::nonzero", "aten::where"))


def test_by_element_bodies_match_torchvision():
    """The CUDA kernels' per-element code (level choice included), run on the CPU."""
    x = make_features(batch=2, channels=2, dtype=torch.float64, extra=False)
    maps = list(x.values())
    boxes = [b.double() for b in make_boxes(counts=(12, 9))]
    ours, theirs = pooler_pair(output_size=3)
    expected = theirs(x, boxes, image_shapes())
    ours(x, boxes, image_shapes())
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=b.dtype), b], 1) for i, b in enumerate(boxes)])
    actual = torch.ops.msrcnn_testing.multi_level_roi_align_by_element(maps, rois, ours.scales, 3, 3, 2, False, 224, 4)
    torch.testing.assert_close(actual, expected, atol=1e-10, rtol=0)
    grad_out = torch.randn_like(expected)
    xt = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    theirs(xt, boxes, image_shapes()).backward(grad_out)
    grads = torch.ops.msrcnn_testing.multi_level_roi_align_backward_by_element(
        grad_out,
        rois,
        ours.scales,
        3,
        3,
        2,
        False,
        224,
        4,
        2,
        2,
        [m.size(2) for m in maps],
        [m.size(3) for m in maps],
        False,
    )
    for grad, name in zip(grads, x):
        torch.testing.assert_close(grad, xt[name].grad, atol=1e-10, rtol=0)


def test_opcheck():
    maps = [torch.randn(2, 3, 16 // 2**i, 20 // 2**i).requires_grad_() for i in range(3)]
    rois = torch.cat([torch.tensor([[0.0], [1.0], [1.0], [0.0]]), make_boxes(counts=(4,))[0] / 4], dim=1)
    args = (maps, rois, [1.0, 0.5, 0.25], 3, 3, 2, False, 16, 2)
    torch.library.opcheck(torch.ops.msrcnn.multi_level_roi_align.default, args)
    grad = torch.randn(4, 3, 3, 3)
    for channels_last in (False, True):
        torch.library.opcheck(
            torch.ops.msrcnn._multi_level_roi_align_backward.default,
            (grad, rois, [1.0, 0.5, 0.25], 3, 3, 2, False, 16, 2, 2, 3, [16, 8, 4], [20, 10, 5], channels_last),
        )


def test_torch_compile_fullgraph():
    ours, _ = pooler_pair()
    x = make_features()
    boxes = make_boxes()
    shapes = image_shapes()
    ours(x, boxes, shapes)  # infer the scales eagerly, as a model's first step would

    def pooled(p2, p3, p4, p5, b0, b1):
        return ours(OrderedDict(p2=p2, p3=p3, p4=p4, p5=p5), [b0, b1], shapes).sum(dim=(2, 3))

    args = (x["p2"], x["p3"], x["p4"], x["p5"], *boxes)
    compiled = torch.compile(pooled, fullgraph=True)
    torch.testing.assert_close(compiled(*args), pooled(*args))


SAMPLING_RATIO_1025 = r"sampling_ratio.* \[1, 1024\] .*got 1025"


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, b: ops.multi_level_roi_align([], b, 7, []), "at least one feature map"),
        (lambda x, b: ops.multi_level_roi_align(x, b, 7, [0.25, 0.125]), "one spatial scale per feature map"),
        (lambda x, b: ops.multi_level_roi_align(x[:2], b, 7, [0.25, float("nan")]), r"spatial_scales\[1\] = nan"),
        (lambda x, b: ops.MultiScaleRoIAlign(["p2"], 7, 2)({"p2": x[0][:, :, :0, :0]}, b, [IMAGE]), "x: cannot infer"),
        (lambda x, b: ops.multi_level_roi_align([x[0], x[1][:, :3]], b, 7, [0.25, 0.125]), "share N and C"),
        (lambda x, b: ops.multi_level_roi_align([x[0]] * 9, b, 7, [0.25] * 9), "1 to 8 feature maps"),
        (lambda x, b: ops.MultiScaleRoIAlign(["nope"], 7, 2)({"p2": x[0]}, b, [IMAGE]), "none of the feature maps"),
        (lambda x, b: ops.MultiScaleRoIAlign(["p2"], 7, 2)({"p2": x[0]}, b, []), "image_shapes"),
        (lambda x, b: ops.MultiScaleRoIAlign(["p2"], 7, 1025)({"p2": x[0]}, b, [IMAGE]), SAMPLING_RATIO_1025),
        (lambda x, b: ops.multi_level_roi_align(x[:1], b, 7, [0.25], 2**40), r"sampling_ratio.* \[1, 1024\]"),
        (lambda x, b: ops.multi_level_roi_align(x[:1], b, 7, [0.25], -(2**70)), r"sampling_ratio: .* \[1, 1024\]"),
        (lambda x, b: ops.multi_level_roi_align(x[:1], b, (-1, 7), [0.25]), "positive output_size"),
        (lambda x, b: ops.multi_level_roi_align(x[:1], b, 2**40, [0.25]), r"output_size \(1099511627776, .* large"),
        (lambda x, b: ops.multi_level_roi_align(x[:1], b, 2**18, [0.25]), "output_size .* allocated"),
        (lambda x, b: ops.multi_level_roi_align(x[:1], b, 2**64, [0.25]), "output_size: .* too large"),
    ],
)
def test_bad_input(call, match):
    x = list(make_features(extra=False).values())
    with pytest.raises(ValueError, match=match):
        call(x, make_boxes())


def test_mixed_dtypes_rejected():
    x = list(make_features(extra=False).values())
    with pytest.raises(TypeError, match="one dtype"):
        ops.multi_level_roi_align([x[0], x[1].double()], make_boxes(), 7, [0.25, 0.125])


@given(
    counts=st.tuples(st.integers(0, 8), st.integers(0, 8)),
    output_size=st.integers(1, 5),
    sampling_ratio=st.integers(-1, 2),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_torchvision(counts, output_size, sampling_ratio, channels_last, seed):
    x = make_features(channels=3, dtype=torch.float64, seed=seed)
    if channels_last:
        x = OrderedDict((k, v.contiguous(memory_format=torch.channels_last)) for k, v in x.items())
    boxes = make_boxes(counts=counts, seed=seed + 1, dtype=torch.float64)
    ours, theirs = pooler_pair(output_size, sampling_ratio)
    torch.testing.assert_close(ours(x, boxes, image_shapes()), theirs(x, boxes, image_shapes()), atol=1e-10, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_torchvision(dtype):
    x = OrderedDict((k, v.cuda()) for k, v in make_features(dtype=dtype).items())
    boxes = [b.cuda().to(dtype) for b in make_boxes()]
    ours, theirs = pooler_pair()
    tol = 2e-3 if dtype == torch.float16 else ATOL32
    expected = theirs(x, boxes, image_shapes())
    torch.testing.assert_close(ours(x, boxes, image_shapes()), expected, atol=tol, rtol=tol)
    xo = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    xt = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    ours(xo, boxes, image_shapes()).float().sum().backward()
    theirs(xt, boxes, image_shapes()).float().sum().backward()
    for name in ("p2", "p3", "p4", "p5"):
        torch.testing.assert_close(xo[name].grad, xt[name].grad, atol=tol * 10, rtol=tol)


def per_image(rois, batch=2):
    """A Tensor[K, 5] as torchvision's list of Tensor[L, 4], and the order that restores K."""
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(batch)]
    order = torch.cat([torch.nonzero(rois[:, 0] == i)[:, 0] for i in range(batch)]).argsort()
    return boxes, order


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_boxes_far_larger_than_the_maps_match_torchvision(cpu_capability, dtype, layout):
    """Boxes 50-200 times the image (so the coarsest map, where they go) with an adaptive
    grid, among normal ones: torchvision still finishes; same values and gradients."""
    g = torch.Generator().manual_seed(3)
    x = make_features(channels=3, dtype=dtype)
    if layout == "nhwc":
        x = OrderedDict((k, v.contiguous(memory_format=torch.channels_last)) for k, v in x.items())
    normal = torch.cat([torch.tensor([[0.0], [1.0], [1.0]]), random_boxes(3, IMAGE[0], IMAGE[1], g)], dim=1)
    rois = torch.cat([normal, boxes_far_larger_than(IMAGE[0], IMAGE[1], 1.0, g)]).to(dtype)
    boxes, order = per_image(rois)
    ours, theirs = pooler_pair(sampling_ratio=-1)
    xo = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    xt = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    expected = theirs(xt, boxes, image_shapes())
    actual = ours(xo, boxes, image_shapes())
    atol = ATOL32 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)
    grad_out = torch.randn(expected.shape, generator=g, dtype=dtype)
    actual.backward(grad_out)
    expected.backward(grad_out)
    for name in ("p2", "p3", "p4", "p5"):
        torch.testing.assert_close(xo[name].grad, xt[name].grad, atol=atol, rtol=0)
    maps = [x[name] for name in ("p2", "p3", "p4", "p5")]
    by_element = torch.ops.msrcnn_testing.multi_level_roi_align_by_element(
        maps, rois, ours.scales, 7, 7, -1, False, 224, 4
    )
    torch.testing.assert_close(by_element, expected[order], atol=atol, rtol=0)
    grads = torch.ops.msrcnn_testing.multi_level_roi_align_backward_by_element(
        grad_out[order],
        rois,
        ours.scales,
        7,
        7,
        -1,
        False,
        224,
        4,
        2,
        3,
        [m.size(2) for m in maps],
        [m.size(3) for m in maps],
        layout == "nhwc",
    )
    for grad, name in zip(grads, ("p2", "p3", "p4", "p5")):
        torch.testing.assert_close(grad, xt[name].grad, atol=atol, rtol=0)


SCALES = [0.25, 0.125, 0.0625, 0.03125]


def expected_on_map(case):
    """roi_align_on_map of each RoI on the map torchvision's LevelMapper picks, with gradients."""
    maps = [f.clone().requires_grad_() for f in case["features"]]
    rois = case["rois"]
    levels = torchvision.ops.poolers.LevelMapper(2, 5)([rois[:, 1:]])
    out = torch.cat(
        [
            roi_align_on_map(maps[level], rois[i : i + 1], case["output_size"], SCALES[level])
            for i, level in enumerate(levels.tolist())
        ]
    )
    out.backward(case["grad_out"])
    return out.detach(), [m.grad if m.grad is not None else torch.zeros_like(m) for m in maps]


def torchvision_on_rows(case, rows):
    x = OrderedDict((f"p{i + 2}", f.clone().requires_grad_()) for i, f in enumerate(case["features"]))
    boxes, order = per_image(case["rois"][rows])
    _, theirs = pooler_pair(case["output_size"], -1)
    out = theirs(x, boxes, image_shapes())[order]
    out.backward(case["grad_out"][rows])
    return out.detach(), [f.grad for f in x.values()]


def test_huge_boxes_finish_with_the_on_map_values(cpu_capability):
    """1e9, 1e30 and -1e30 boxes (on the coarsest map, adaptive grids of 4e6 to 2^31 - 1
    samples per side) mixed with normal ones: forward and backward, vectorised kernels and
    element bodies, NCHW and channels-last, float32 and float64, in a child process so that
    a hang fails the test."""
    g = torch.Generator().manual_seed(5)
    cases = []
    for dtype in (torch.float32, torch.float64):
        maps = list(make_features(channels=3, dtype=dtype, extra=False).values())
        normal = torch.cat([torch.tensor([[0.0], [1.0], [0.0], [1.0]]), random_boxes(4, IMAGE[0], IMAGE[1], g)], 1)
        cases += huge_box_cases(maps, SCALES, normal, (7, 7), g)
    results = run_in_child(pool_with_every_engine, cpu_capability, to_payload(cases))
    check_huge_box_results(cases, results, expected_on_map, torchvision_on_rows)


def test_non_finite_coordinates_pool_to_zeros():
    pooler = ops.MultiScaleRoIAlign(["0", "1"], 4, 2)
    features = {"0": torch.randn(1, 8, 32, 32), "1": torch.randn(1, 8, 16, 16)}
    nan, inf = float("nan"), float("inf")
    good = [1.0, 1.0, 90.0, 60.0]
    boxes = [torch.tensor([good, [nan, 0, 4, 4], [0, 0, inf, 4], [-inf, 0, 4, 4], [0, nan, nan, nan], good])]
    pooled = pooler(features, boxes, [(128, 128)])
    assert torch.equal(pooled[1:5], torch.zeros_like(pooled[1:5]))
    expected = pooler(features, [torch.tensor([good])], [(128, 128)])[0]
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[5], expected)
