"""msrcnn_fast.ops.roi_align against torchvision.ops.roi_align.

Tolerances: box coordinates and sample positions are computed in float32 for float32,
float16 and bfloat16 maps (torchvision computes them in the map's dtype), so a position
error of about |coordinate| * 2^-23 pixels times the map's local slope (<= ~8 for randn
maps) shows up: 1e-4 absolute covers coordinates up to a few hundred pixels. float64 is
compared at 1e-10. Half types are compared with torchvision on the same values upcast to
float32, within the output rounding of the type (2^-11 relative for float16, 2^-8 for
bfloat16) plus the float32 slack.
"""

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from msrcnn_fast import ops
from msrcnn_fast.ops.roi_align import MAX_SAMPLING_RATIO
from tests.ops.roi_data import (
    EDGE_BOXES,
    boxes_far_larger_than,
    check_huge_box_results,
    huge_box_cases,
    outcomes,
    pool_with_every_engine,
    random_rois,
    roi_align_on_map,
    run_in_child,
    to_payload,
)

ATOL32 = 1e-4


def make_input(batch=2, channels=12, height=48, width=64, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=g).to(dtype)


def make_rois(num=40, batch=2, height=48, width=64, seed=1, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return random_rois(num, batch, height * scale, width * scale, g)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25, 1 / 16])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_forward_matches_torchvision(cpu_capability, aligned, sampling_ratio, spatial_scale, layout):
    x = make_input(channels=21)  # 21: two vector blocks... and a scalar tail
    rois = make_rois(scale=1 / spatial_scale)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    expected = torchvision.ops.roi_align(x, rois, (7, 5), spatial_scale, sampling_ratio, aligned)
    actual = ops.roi_align(x, rois, (7, 5), spatial_scale, sampling_ratio, aligned)
    assert actual.is_contiguous()
    torch.testing.assert_close(actual, expected, atol=ATOL32, rtol=0)


def test_many_rois_take_the_nhwc_path_and_agree(cpu_capability):
    # Enough RoIs per map element that NCHW maps are converted to NHWC internally.
    x = make_input(batch=1, channels=40, height=16, width=16)
    rois = make_rois(num=300, batch=1, height=16, width=16, scale=1.0)
    expected = torchvision.ops.roi_align(x, rois, 7, 1.0, 2)
    torch.testing.assert_close(ops.roi_align(x, rois, 7, 1.0, 2), expected, atol=ATOL32, rtol=0)


def test_non_contiguous_input():
    base = make_input(channels=24, width=70)
    x = base[:, ::2, :, 3:67]  # strided channels and a column offset
    assert not x.is_contiguous()
    rois = make_rois()
    expected = torchvision.ops.roi_align(x.contiguous(), rois, 6, 0.25, 2)
    torch.testing.assert_close(ops.roi_align(x, rois, 6, 0.25, 2), expected, atol=ATOL32, rtol=0)
    rois_view = torch.cat([rois, rois], dim=1)[:, :5]  # non-contiguous rois
    torch.testing.assert_close(ops.roi_align(x, rois_view, 6, 0.25, 2), expected, atol=ATOL32, rtol=0)


def test_float64_is_exact():
    x = make_input(dtype=torch.float64)
    rois = make_rois().double()
    for aligned in (False, True):
        expected = torchvision.ops.roi_align(x, rois, 7, 0.25, -1, aligned)
        torch.testing.assert_close(ops.roi_align(x, rois, 7, 0.25, -1, aligned), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype,eps", [(torch.float16, 2**-11), (torch.bfloat16, 2**-8)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_half_types_accumulate_in_float32(cpu_capability, dtype, eps, layout):
    x = make_input(channels=19, dtype=dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = make_rois()
    actual = ops.roi_align(x, rois.to(dtype), 7, 0.25, 2)
    assert actual.dtype == dtype
    expected = torchvision.ops.roi_align(x.float(), rois.to(dtype).float(), 7, 0.25, 2)
    torch.testing.assert_close(actual.float(), expected, atol=ATOL32, rtol=2 * eps)


def test_float32_rois_with_half_input():
    x = make_input(dtype=torch.bfloat16)
    rois = make_rois()
    expected = torchvision.ops.roi_align(x.float(), rois, 7, 0.25, 2)
    torch.testing.assert_close(ops.roi_align(x, rois, 7, 0.25, 2).float(), expected, atol=ATOL32, rtol=2**-7)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_edge_boxes(cpu_capability, aligned, sampling_ratio):
    x = make_input(batch=1, channels=16, height=12, width=16)
    for box in EDGE_BOXES:
        rois = torch.tensor([[0.0, *box]])
        for layout in (torch.contiguous_format, torch.channels_last):
            xl = x.contiguous(memory_format=layout)
            actual = ops.roi_align(xl, rois, 4, 0.25, sampling_ratio, aligned)
            try:
                expected = torchvision.ops.roi_align(xl, rois, 4, 0.25, sampling_ratio, aligned)
            except ValueError:
                # torchvision's CPU kernel fails on inverted boxes when aligned with an
                # adaptive grid (a negative grid size); its CUDA kernel, like ours, gives zeros.
                assert aligned and sampling_ratio <= 0
                expected = torch.zeros_like(actual)
            torch.testing.assert_close(actual, expected, atol=ATOL32, rtol=0)


def test_on_map_reference_matches_torchvision():
    """roi_align_on_map (the expected values of the huge-box tests) is torchvision's formula."""
    g = torch.Generator().manual_seed(7)
    for dtype in (torch.float32, torch.float64):
        x = make_input(batch=2, channels=3, height=8, width=10, dtype=dtype)
        rois = torch.cat([random_rois(6, 2, 32, 40, g, outside=0.5), boxes_far_larger_than(8, 10, 0.25, g)]).to(dtype)
        for sampling_ratio, aligned in ((-1, False), (-1, True), (2, True)):
            expected = torchvision.ops.roi_align(x, rois, (4, 3), 0.25, sampling_ratio, aligned)
            actual = roi_align_on_map(x, rois, (4, 3), 0.25, sampling_ratio, aligned)
            torch.testing.assert_close(actual, expected, atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_boxes_far_larger_than_the_map_match_torchvision(cpu_capability, aligned, dtype, layout):
    """Boxes 50-200 times the map (adaptive grids of up to ~5e4 samples per bin, torchvision
    still finishes): visiting only the samples on the map gives its values and gradients."""
    g = torch.Generator().manual_seed(11)
    x = make_input(batch=2, channels=3, height=8, width=10, dtype=dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = torch.cat([make_rois(num=2, height=8, width=10), boxes_far_larger_than(8, 10, 0.25, g)]).to(dtype)
    atol = ATOL32 if dtype == torch.float32 else 1e-10
    expected = torchvision.ops.roi_align(x, rois, (7, 5), 0.25, -1, aligned)
    torch.testing.assert_close(ops.roi_align(x, rois, (7, 5), 0.25, -1, aligned), expected, atol=atol, rtol=0)
    grad_out = torch.randn(expected.shape, generator=g, dtype=dtype)
    ours = x.clone().requires_grad_()
    ops.roi_align(ours, rois, (7, 5), 0.25, -1, aligned).backward(grad_out)
    ref = x.clone().requires_grad_()
    torchvision.ops.roi_align(ref, rois, (7, 5), 0.25, -1, aligned).backward(grad_out)
    torch.testing.assert_close(ours.grad, ref.grad, atol=atol, rtol=0)
    by_element = torch.ops.msrcnn_testing.multi_level_roi_align_by_element([x], rois, [0.25], 7, 5, -1, aligned, 224, 4)
    torch.testing.assert_close(by_element, expected, atol=atol, rtol=0)
    (grad,) = torch.ops.msrcnn_testing.multi_level_roi_align_backward_by_element(
        grad_out, rois, [0.25], 7, 5, -1, aligned, 224, 4, 2, 3, [8], [10], layout == "nhwc"
    )
    torch.testing.assert_close(grad, ref.grad, atol=atol, rtol=0)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_rois_with_many_samples_match_torchvision(cpu_capability, layout):
    """A RoI of over 2^16 samples on the map (64^2 per bin, 5x5 bins) is pooled in several
    tap tables (each thread's memory is bounded): same values and gradients."""
    x = make_input(batch=2, channels=5, height=30, width=35, dtype=torch.float64)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = torch.tensor([[0.0, -3, -2, 34, 29], [1, 10, 4, 25, 20], [0, 2, 3, 30, 28]], dtype=torch.float64)
    ours = x.clone().requires_grad_()
    out = ops.roi_align(ours, rois, 5, 1.0, 64)
    ref = x.clone().requires_grad_()
    expected = torchvision.ops.roi_align(ref, rois, 5, 1.0, 64)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    grad_out = torch.randn(expected.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out.backward(grad_out)
    expected.backward(grad_out)
    torch.testing.assert_close(ours.grad, ref.grad, atol=1e-10, rtol=0)


def expected_on_map(case):
    """roi_align_on_map's output and gradient for a case of huge_box_cases."""
    x = case["features"][0].clone().requires_grad_()
    out = roi_align_on_map(x, case["rois"], case["output_size"], case["scales"][0])
    out.backward(case["grad_out"])
    return out.detach(), [x.grad]


def torchvision_on_rows(case, rows):
    x = case["features"][0].clone().requires_grad_()
    out = torchvision.ops.roi_align(x, case["rois"][rows], case["output_size"], case["scales"][0])
    out.backward(case["grad_out"][rows])
    return out.detach(), [x.grad]


def test_huge_boxes_finish_with_the_on_map_values(cpu_capability):
    """1e9, 1e30 and -1e30 boxes (adaptive grids of 1e7 to 2^31 - 1 samples per side) mixed
    with normal ones: forward and backward, vectorised kernels and element bodies, NCHW and
    channels-last, float32 and float64, in a child process so that a hang fails the test."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for dtype in (torch.float32, torch.float64):
        x = make_input(batch=2, channels=5, height=12, width=16, dtype=dtype)
        cases += huge_box_cases([x], [0.25], make_rois(num=4, height=12, width=16), (7, 5), g)
    results = run_in_child(pool_with_every_engine, cpu_capability, to_payload(cases))
    check_huge_box_results(cases, results, expected_on_map, torchvision_on_rows)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("aligned,sampling_ratio", [(False, -1), (True, 2)])
def test_non_finite_coordinates_pool_to_zeros(aligned, sampling_ratio, layout):
    # torchvision 0.29.1's CPU kernel segfaults here; ours gives the documented zeros.
    x = make_input(batch=2, channels=8, height=12, width=16).contiguous(memory_format=layout).requires_grad_()
    nan, inf = float("nan"), float("inf")
    good = [1.0, 1.0, 2.0, 30.0, 20.0]
    bad = [[0.0, nan, 0, 4, 4], [0.0, 0, 0, inf, 4], [1.0, -inf, 0, 4, 4], [1.0, 0, nan, nan, nan]]
    rois = torch.tensor([good, *bad, good])
    pooled = ops.roi_align(x, rois, 4, 0.5, sampling_ratio, aligned)
    assert torch.equal(pooled[1:5], torch.zeros_like(pooled[1:5]))
    expected = ops.roi_align(x, torch.tensor([good]), 4, 0.5, sampling_ratio, aligned)[0]
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[5], expected)
    (grad,) = torch.autograd.grad(pooled.sum(), x)
    (grad_good,) = torch.autograd.grad(ops.roi_align(x, rois[[0, 5]], 4, 0.5, sampling_ratio, aligned).sum(), x)
    torch.testing.assert_close(grad, grad_good)


def test_many_rois_with_non_finite_top_edges_pool_like_each_alone():
    # The NCHW forward sorts its RoIs by top edge; NaN edges must not break that order.
    x = make_input(batch=2, channels=8, height=24, width=32)
    g = torch.Generator().manual_seed(5)
    rois = random_rois(300, 2, 96, 128, g)
    rois[::3, 2] = float("nan")
    rois[1::7, 2] = float("-inf")
    pooled = ops.roi_align(x, rois, 5, 0.25, 2)
    expected = torch.stack([ops.roi_align(x, roi[None], 5, 0.25, 2)[0] for roi in rois])
    torch.testing.assert_close(pooled, expected, atol=ATOL32, rtol=0)
    assert torch.equal(pooled[::3], torch.zeros_like(pooled[::3]))


def test_no_boxes():
    x = make_input()
    assert ops.roi_align(x, torch.zeros(0, 5), 7).shape == (0, 12, 7, 7)
    assert ops.roi_align(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 7).shape == (0, 12, 7, 7)
    assert ops.roi_align(x, [], 7).shape == (0, 12, 7, 7)
    xr = x.clone().requires_grad_()
    ops.roi_align(xr, torch.zeros(0, 5), 7).sum().backward()
    assert xr.grad.shape == x.shape and not xr.grad.any()


def test_box_list_equals_roi_tensor():
    x = make_input(batch=3)
    g = torch.Generator().manual_seed(3)
    boxes = [random_rois(n, 1, 192, 256, g)[:, 1:] for n in (5, 0, 7)]  # image 1 has none
    expected = torchvision.ops.roi_align(x, boxes, 5, 0.25, 2)
    torch.testing.assert_close(ops.roi_align(x, boxes, 5, 0.25, 2), expected, atol=ATOL32, rtol=0)
    torch.testing.assert_close(ops.roi_align(x, tuple(boxes), 5, 0.25, 2), expected, atol=ATOL32, rtol=0)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_gradient_matches_torchvision(cpu_capability, aligned, layout):
    x = make_input(channels=21, dtype=torch.float64)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = make_rois(num=60).double()
    grad_out = torch.randn(60, 21, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ours = x.clone().requires_grad_()
    ops.roi_align(ours, rois, 7, 0.25, -1, aligned).backward(grad_out)
    ref = x.clone().requires_grad_()
    torchvision.ops.roi_align(ref, rois, 7, 0.25, -1, aligned).backward(grad_out)
    torch.testing.assert_close(ours.grad, ref.grad, atol=1e-10, rtol=0)
    assert ours.grad.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")


def test_gradient_many_rois_nchw_float32(cpu_capability):
    # Many RoIs: the NCHW gradient is computed in NHWC buffers and converted back.
    x = make_input(batch=1, channels=32, height=16, width=16)
    rois = make_rois(num=300, batch=1, height=16, width=16, scale=1.0)
    ours = x.clone().requires_grad_()
    ops.roi_align(ours, rois, 7, 1.0, 2).sum().backward()
    ref = x.clone().requires_grad_()
    torchvision.ops.roi_align(ref, rois, 7, 1.0, 2).sum().backward()
    assert ours.grad.is_contiguous()
    torch.testing.assert_close(ours.grad, ref.grad, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_gradient(dtype):
    x = make_input(channels=8, dtype=dtype)
    rois = make_rois(num=20)
    ours = x.clone().requires_grad_()
    ops.roi_align(ours, rois, 7, 0.25, 2).sum().backward()
    assert ours.grad.dtype == dtype
    ref = x.float().requires_grad_()
    torchvision.ops.roi_align(ref, rois, 7, 0.25, 2).sum().backward()
    eps = 2**-11 if dtype == torch.float16 else 2**-8
    torch.testing.assert_close(ours.grad.float(), ref.grad, atol=1e-3, rtol=2 * eps)


def test_backward_is_deterministic_across_thread_counts():
    x = make_input(batch=2, channels=48, height=20, width=20)
    rois = make_rois(num=200, height=20, width=20, scale=1.0)
    grad_out = torch.randn(200, 48, 7, 7, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            for layout in (torch.contiguous_format, torch.channels_last):
                xr = x.clone(memory_format=layout).requires_grad_()
                ops.roi_align(xr, rois, 7, 1.0, 2).backward(grad_out)
                grads.append(xr.grad.contiguous())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[2])  # NCHW, 1 thread vs several: bitwise
    assert torch.equal(grads[1], grads[3])  # NHWC


def test_gradcheck():
    x = make_input(batch=2, channels=3, height=6, width=7, dtype=torch.float64).requires_grad_()
    rois = torch.tensor(
        [[0, 1.0, 1.5, 17.0, 20.0], [1, -3.0, 2.0, 9.0, 30.0], [1, 5.0, 5.0, 6.0, 6.0]], dtype=torch.float64
    )
    for aligned in (False, True):
        assert torch.autograd.gradcheck(lambda t, a=aligned: ops.roi_align(t, rois, (3, 2), 0.25, 2, a), (x,))
        xl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        assert torch.autograd.gradcheck(lambda t, a=aligned: ops.roi_align(t, rois, (3, 2), 0.25, -1, a), (xl,))


def test_by_element_bodies_match_torchvision():
    """The CUDA kernels' per-element code, run on the CPU, against torchvision."""
    x = make_input(batch=2, channels=3, height=10, width=13, dtype=torch.float64)[:, :, :, 1:]  # strided
    rois = make_rois(num=12, height=10, width=12, scale=2.0).double()
    for aligned in (False, True):
        for sampling_ratio in (-1, 2):
            expected = torchvision.ops.roi_align(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
            actual = torch.ops.msrcnn_testing.multi_level_roi_align_by_element(
                [x], rois, [0.5], 3, 4, sampling_ratio, aligned, 224, 4
            )
            torch.testing.assert_close(actual, expected, atol=1e-10, rtol=0)
            grad_out = torch.randn_like(expected)
            ref = x.detach().clone().requires_grad_()
            torchvision.ops.roi_align(ref, rois, (3, 4), 0.5, sampling_ratio, aligned).backward(grad_out)
            for channels_last in (False, True):
                (grad,) = torch.ops.msrcnn_testing.multi_level_roi_align_backward_by_element(
                    grad_out.transpose(2, 3).contiguous().transpose(2, 3),
                    rois,
                    [0.5],
                    3,
                    4,
                    sampling_ratio,
                    aligned,
                    224,
                    4,
                    2,
                    3,
                    [10],
                    [12],
                    channels_last,
                )
                torch.testing.assert_close(grad, ref.grad, atol=1e-10, rtol=0)


def test_module():
    x = make_input()
    rois = make_rois()
    module = ops.RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)
    assert "RoIAlign(output_size=(7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)" == repr(module)
    expected = torchvision.ops.RoIAlign((7, 7), 0.25, 2, aligned=True)(x, rois)
    torch.testing.assert_close(module(x, rois), expected, atol=ATOL32, rtol=0)


def test_opcheck():
    x = make_input(batch=2, channels=4, height=9, width=11).requires_grad_()
    rois = make_rois(num=6, height=9, width=11)
    for aligned in (False, True):
        torch.library.opcheck(torch.ops.msrcnn.roi_align.default, (x, rois, 0.25, 3, 2, 2, aligned))
    xl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.msrcnn.roi_align.default, (xl, rois, 0.25, 3, 2, -1, False))
    grad = torch.randn(6, 4, 3, 2)
    for channels_last in (False, True):
        torch.library.opcheck(
            torch.ops.msrcnn._roi_align_backward.default,
            (grad, rois, 0.25, 3, 2, 2, 4, 9, 11, 2, False, channels_last),
        )


def test_torch_compile_fullgraph():
    def pooled_energy(x, rois):
        return ops.roi_align(x, rois, 5, 0.25, 2, True).square().mean(dim=(1, 2, 3))

    x = make_input(batch=2, channels=8, height=16, width=16)
    rois = make_rois(num=9, height=16, width=16)
    compiled = torch.compile(pooled_energy, fullgraph=True, backend="inductor")
    torch.testing.assert_close(compiled(x, rois), pooled_energy(x, rois))
    xg = x.clone().requires_grad_()
    compiled(xg, rois).sum().backward()
    xe = x.clone().requires_grad_()
    pooled_energy(xe, rois).sum().backward()
    torch.testing.assert_close(xg.grad, xe.grad)


SAMPLING_RATIO_1025 = r"sampling_ratio.* \[1, 1024\] .*got 1025"


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda x: ops.roi_align(x, torch.zeros(3, 4), 7), ValueError, r"boxes: expected a Tensor\[K, 5\]"),
        (lambda x: ops.roi_align(x, [torch.zeros(3, 5)], 7), ValueError, r"boxes\[0\]: expected a Tensor\[L, 4\]"),
        (lambda x: ops.roi_align(x, "boxes", 7), TypeError, "boxes: expected"),
        (lambda x: ops.roi_align(x[0], torch.zeros(1, 5), 7), ValueError, "expected input of shape"),
        (lambda x: ops.roi_align(x.long(), torch.zeros(1, 5), 7), TypeError, "floating-point"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5, dtype=torch.long), 7), TypeError, "rois"),
        (lambda x: ops.roi_align(x, torch.tensor([[2.0, 0, 0, 4, 4]]), 7), ValueError, r"rois\[0, 0\] = 2"),
        (lambda x: ops.roi_align(x, torch.tensor([[-1.0, 0, 0, 4, 4]]), 7), ValueError, "not a batch index"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), (0, 7)), ValueError, "positive output_size"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), (7, -3)), ValueError, r"positive output_size, got \(7, -3\)"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), 2**40), ValueError, r"output_size \(1099511627776, 10995"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), (2**62, 4)), ValueError, "output_size .* too large"),
        (lambda x: ops.roi_align(x, torch.zeros(2**20, 5), (2**20, 2**20)), ValueError, "output_size .* too large"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), (2**20, 2**20)), ValueError, "output_size .* allocated"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), 2**70), ValueError, "output_size: .* too large"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), 7, sampling_ratio=1025), ValueError, SAMPLING_RATIO_1025),
        (
            lambda x: ops.roi_align(x, torch.zeros(1, 5), 7, sampling_ratio=2**40),
            ValueError,
            r"sampling_ratio.* \[1, 1024\] .*got 1099511627776",
        ),
        (
            lambda x: ops.roi_align(x, torch.zeros(1, 5), 7, sampling_ratio=2**70),
            ValueError,
            r"sampling_ratio: .* \[1, 1024\] .*got 1180591620717411303424",
        ),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), (1, 2, 3)), ValueError, "output_size"),
        (
            lambda x: ops.roi_align(x, torch.zeros(1, 5), 7, spatial_scale=-1.0),
            ValueError,
            "expected a positive, finite spatial_scale",
        ),
    ],
)
def test_bad_input(call, error, match):
    x = make_input()
    with pytest.raises(error, match=match):
        call(x)


def test_sampling_ratio_bound():
    """1024 (MAX_SAMPLING_RATIO) is taken, as torchvision; 1025 is refused by every op, also
    when called directly (the C++ check), not only through the Python functions."""
    assert MAX_SAMPLING_RATIO == 1024
    x = make_input(batch=1, channels=1, height=6, width=6)
    rois = torch.tensor([[0.0, 1.0, 1.0, 4.0, 5.0]])
    expected = torchvision.ops.roi_align(x, rois, 1, 1.0, 1024)
    torch.testing.assert_close(ops.roi_align(x, rois, 1, 1.0, 1024), expected, atol=ATOL32, rtol=0)
    grad = torch.ones(1, 1, 1, 1)
    calls = [
        lambda: torch.ops.msrcnn.roi_align(x, rois, 1.0, 1, 1, 1025, False),
        lambda: torch.ops.msrcnn._roi_align_backward(grad, rois, 1.0, 1, 1, 1, 1, 6, 6, 1025, False, False),
        lambda: torch.ops.msrcnn.multi_level_roi_align([x], rois, [1.0], 1, 1, 1025, False, 224, 4),
        lambda: torch.ops.msrcnn._multi_level_roi_align_backward(
            grad, rois, [1.0], 1, 1, 1025, False, 224, 4, 1, 1, [6], [6], False
        ),
        lambda: torch.ops.msrcnn_testing.multi_level_roi_align_by_element([x], rois, [1.0], 1, 1, 1025, False, 224, 4),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=SAMPLING_RATIO_1025):
            call()
    with pytest.raises(ValueError, match=r"output_size \(4294967296, 4294967296\) is too large"):
        torch.ops.msrcnn._roi_align_backward(grad, rois, 1.0, 2**32, 2**32, 1, 1, 6, 6, 2, False, False)


def test_output_too_large_to_allocate_fails_at_once():
    """An output_size whose output fits int64 but not memory is a ValueError before any work
    proportional to the bins (the NHWC choice looks at every bin row and column): in a child
    process, so that a slow failure fails the test."""
    x = make_input(batch=1, channels=1, height=6, width=6)
    rois = torch.tensor([[0.0, 1.0, 1.0, 4.0, 5.0]])
    calls = [
        ("roi_align", (x, rois, (2**40, 2**20)), {}),
        ("multi_level_roi_align", ([x, x[:, :, :3, :3]], rois, (2**20, 2**40), [1.0, 0.5]), {}),
    ]
    for error, message in run_in_child(outcomes, calls, timeout=60):
        # The drop-ins' ValueError that is also torchvision's RuntimeError (msrcnn_fast.ops.errors).
        assert error == "ArgumentValueError" and "could not be allocated" in message, (error, message)


@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 20),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    num=st.integers(0, 12),
    pooled=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25]),
    sampling_ratio=st.integers(-1, 3),
    aligned=st.booleans(),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_torchvision(
    batch, channels, height, width, num, pooled, spatial_scale, sampling_ratio, aligned, channels_last, seed
):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = random_rois(num, batch, height / spatial_scale, width / spatial_scale, g, outside=0.5).double()
    expected = torchvision.ops.roi_align(x, rois, pooled, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(
        ops.roi_align(x, rois, pooled, spatial_scale, sampling_ratio, aligned), expected, atol=1e-10, rtol=0
    )
    grad_out = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    ours = x.clone().requires_grad_()
    ops.roi_align(ours, rois, pooled, spatial_scale, sampling_ratio, aligned).backward(grad_out)
    ref = x.clone().requires_grad_()
    torchvision.ops.roi_align(ref, rois, pooled, spatial_scale, sampling_ratio, aligned).backward(grad_out)
    torch.testing.assert_close(ours.grad, ref.grad, atol=1e-10, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_cuda_matches_cpu(dtype, layout):
    x = make_input(channels=21, dtype=dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = make_rois(num=50)
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}.get(dtype, ATOL32)
    for aligned in (False, True):
        expected = ops.roi_align(x, rois, 7, 0.25, -1, aligned)
        actual = ops.roi_align(x.cuda(), rois.cuda(), 7, 0.25, -1, aligned)
        torch.testing.assert_close(actual.cpu(), expected, atol=tol, rtol=tol)
        grad_out = torch.randn(expected.shape).to(dtype)
        xc = x.cuda().requires_grad_()
        ops.roi_align(xc, rois.cuda(), 7, 0.25, -1, aligned).backward(grad_out.cuda())
        xr = x.clone().requires_grad_()
        ops.roi_align(xr, rois, 7, 0.25, -1, aligned).backward(grad_out)
        torch.testing.assert_close(xc.grad.cpu(), xr.grad, atol=tol, rtol=tol)


@pytest.mark.cuda
def test_cuda_opcheck_and_torchvision():
    x = make_input(batch=2, channels=4, height=9, width=11).cuda().requires_grad_()
    rois = make_rois(num=6, height=9, width=11).cuda()
    torch.library.opcheck(torch.ops.msrcnn.roi_align.default, (x, rois, 0.25, 3, 2, 2, False))
    expected = torchvision.ops.roi_align(x.detach(), rois, 3, 0.25, 2)
    torch.testing.assert_close(ops.roi_align(x.detach(), rois, 3, 0.25, 2), expected, atol=ATOL32, rtol=0)
