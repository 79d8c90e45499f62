"""Random feature maps and boxes for the RoIAlign tests, a plain-PyTorch RoIAlign that visits
only the samples on the map, and a runner for calls that must not hang."""

import io
import math
import multiprocessing
import traceback

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


# Edge cases: wholly outside, zero-size, inverted (also across the borders: aligned with a
# fixed grid, sample coordinates fall along the bin), a point, the whole image, huge.
EDGE_BOXES = [
    [70.0, 60.0, -10.0, -8.0],
    [40.0, 56.0, 30.0, -9.0],
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


# Boxes far larger than any map: a diverged model's predictions. The in-map samples of the
# first two are at coordinates without cancellation (bin 0 starts on the map), so their
# values are known exactly; in the others the bins that cross the map start ~1e8 to 1e29
# pixels away, where rounding decides which samples land on the map.
HUGE_BOXES_EXACT = [
    [0.0, 0.0, 1e9, 1e9],
    [1.5, 2.0, 3e8, 1e9],
]
HUGE_BOXES = HUGE_BOXES_EXACT + [
    [0.0, 0.0, 1e30, 1e30],
    [-1e30, -1e30, 1e30, 1e30],
    [-1e30, -1e30, 10.0, 8.0],
    [-1e9, -1e9, 1e9, 1e9],
    [5.0, 3.0, 1e30, 9.0],
]


def _axis_samples(start, bin_index, bin_size, grid, size, dtype, full_below=1 << 16, margin=4096):
    """Coordinates of the samples of one bin side that lie on an axis of `size` cells, computed
    as the kernels do (torchvision's order of operations, in `dtype`)."""
    empty = torch.zeros(0, dtype=dtype)
    if grid <= 0 or size <= 0:
        return empty
    first = start + torch.tensor(float(bin_index), dtype=dtype) * bin_size
    step = bin_size / torch.tensor(float(grid), dtype=dtype)

    def coords(lo, hi):
        c = (torch.arange(lo, hi, dtype=torch.int64).to(torch.float32) + 0.5).to(dtype)
        return first + c * bin_size / torch.tensor(float(grid), dtype=dtype)

    def on_axis(y):
        return (y >= -1) & (y <= size)

    if grid <= full_below:
        lo, hi = 0, grid
    else:
        # The ideal (unrounded) indices of the axis' ends, widened by `margin` for rounding; the
        # samples just outside the window must be off the axis, else the window was too small.
        ends = [(v - float(first)) / float(step) - 0.5 for v in (-1.0, float(size))]
        lo = max(0, math.floor(min(ends)) - margin)
        hi = min(grid, math.ceil(max(ends)) + margin)
        if lo >= hi:
            return empty
        for i in (lo - 1, hi):
            if 0 <= i < grid:
                assert not on_axis(coords(i, i + 1)).item(), "roi_align_on_map: sample window too small"
    y = coords(lo, hi)
    return y[on_axis(y)]


def _axis_taps(y, size):
    """Bilinear taps of coordinates on an axis of `size` cells: (low, high, weight of low,
    weight of high), as torchvision's bilinear_interpolate."""
    y = torch.where(y <= 0, torch.zeros_like(y), y)
    low = y.to(torch.int64)
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    y = torch.where(at_end, low.to(y.dtype), y)
    frac = y - low.to(y.dtype)
    return low, high, 1 - frac, frac


def _adaptive_grid(extent, max_grid):
    if not extent > 0:
        return 0
    grid = torch.ceil(extent)
    return int(grid) if grid < torch.tensor(float(max_grid), dtype=extent.dtype) else max_grid


def roi_align_on_map(x, rois, output_size, spatial_scale, sampling_ratio=-1, aligned=False, max_grid=2**31 - 1):
    """RoIAlign by its formula in plain PyTorch, visiting only the samples on the map.

    torchvision's sample positions (computed in float64 for float64 maps, float32 otherwise, in
    its order of operations), bilinear weights, and rule that a sample outside [-1, size] on
    either axis adds zero but counts in the average of its bin's whole grid; an adaptive grid
    side is ceil(bin size), clamped at `max_grid`. It finishes for any finite box, so it gives
    the expected values for boxes whose full grid no kernel could visit. Differentiable in x.
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    height, width = x.shape[-2:]
    pooled_h, pooled_w = output_size
    rows = []
    for roi in rois.to(dtype):
        scalar = lambda v: torch.tensor(v, dtype=dtype)  # noqa: E731
        offset = scalar(0.5 if aligned else 0.0)
        scale = scalar(spatial_scale)
        start_w = roi[1] * scale - offset
        start_h = roi[2] * scale - offset
        roi_w = roi[3] * scale - offset - start_w
        roi_h = roi[4] * scale - offset - start_h
        if not aligned:
            roi_w = roi_w if roi_w > 1 else scalar(1.0)
            roi_h = roi_h if roi_h > 1 else scalar(1.0)
        bin_h = roi_h / scalar(float(pooled_h))
        bin_w = roi_w / scalar(float(pooled_w))
        grid_h = sampling_ratio if sampling_ratio > 0 else _adaptive_grid(bin_h, max_grid)
        grid_w = sampling_ratio if sampling_ratio > 0 else _adaptive_grid(bin_w, max_grid)
        count = torch.tensor(float(max(grid_h * grid_w, 1)), dtype=dtype)
        plane = x[int(roi[0])].to(dtype)
        rows_y = [_axis_taps(_axis_samples(start_h, p, bin_h, grid_h, height, dtype), height) for p in range(pooled_h)]
        cols_x = [_axis_taps(_axis_samples(start_w, p, bin_w, grid_w, width, dtype), width) for p in range(pooled_w)]
        bins = []
        for y_low, y_high, hy, ly in rows_y:
            for x_low, x_high, hx, lx in cols_x:
                total = plane.new_zeros(plane.shape[0])
                for ys, wy in ((y_low, hy), (y_high, ly)):
                    for xs, wx in ((x_low, hx), (x_high, lx)):
                        values = plane[:, ys][:, :, xs]  # [C, samples_y, samples_x]
                        total = total + (values * (wy[:, None] * wx[None, :])).sum(dim=(1, 2))
                bins.append(total / count)
        rows.append(torch.stack(bins, dim=1).reshape(-1, pooled_h, pooled_w))
    if not rows:
        return x.new_zeros((0, x.shape[1], pooled_h, pooled_w))
    return torch.stack(rows).to(x.dtype)


def pool_with_every_engine(capability, payload):
    """Forward and gradients of RoIAlign for each case in `payload` (bytes of a torch.save'd
    list of dicts: features, rois, scales, output_size, sampling_ratio, aligned, grad_out),
    with the CPU kernels of `capability`: the public op (roi_align for one map,
    multi_level_roi_align for several) and the CUDA element bodies (torch.ops.msrcnn_testing),
    NCHW and channels-last. Returns, per case, {(engine, layout): (output, [gradient of each
    map])}. Meant for run_in_child."""
    from msrcnn_fast import _C, ops

    _C.set_cpu_capability(capability)
    results = []
    for case in torch.load(io.BytesIO(payload)):
        features, rois, scales, (ph, pw) = case["features"], case["rois"], case["scales"], case["output_size"]
        sampling_ratio, aligned, grad_out = case["sampling_ratio"], case["aligned"], case["grad_out"]
        result = {}
        for layout in ("nchw", "nhwc"):
            format = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            maps = [f.detach().clone(memory_format=format).requires_grad_() for f in features]
            if len(maps) == 1:
                out = ops.roi_align(maps[0], rois, (ph, pw), scales[0], sampling_ratio, aligned)
            else:
                out = ops.multi_level_roi_align(maps, rois, (ph, pw), scales, sampling_ratio, aligned)
            out.backward(grad_out)
            result["op", layout] = (out.detach(), [m.grad for m in maps])
            plain = [m.detach() for m in maps]
            out = torch.ops.msrcnn_testing.multi_level_roi_align_by_element(
                plain, rois, scales, ph, pw, sampling_ratio, aligned, 224, 4
            )
            grads = torch.ops.msrcnn_testing.multi_level_roi_align_backward_by_element(
                grad_out,
                rois,
                scales,
                ph,
                pw,
                sampling_ratio,
                aligned,
                224,
                4,
                features[0].size(0),
                features[0].size(1),
                [f.size(2) for f in features],
                [f.size(3) for f in features],
                layout == "nhwc",
            )
            result["by_element", layout] = (out, list(grads))
        results.append(result)
    return results


def huge_box_cases(features, scales, normal_rois, output_size, generator):
    """Cases for pool_with_every_engine: HUGE_BOXES between normal RoIs in one call
    ("mixed"), then the exactly-known huge boxes alone ("exact") and the others alone
    ("rounded"), so that their tiny gradients are seen. Batch indices alternate 0, 1."""
    dtype = features[0].dtype
    huge = torch.tensor([[i % 2, *box] for i, box in enumerate(HUGE_BOXES)], dtype=dtype)
    exact = len(HUGE_BOXES_EXACT)
    normal = normal_rois.to(dtype)
    mixed = torch.cat([normal[:2], huge, normal[2:]])
    cases = []
    for kind, rois in (("mixed", mixed), ("exact", huge[:exact]), ("rounded", huge[exact:])):
        grad_out = torch.randn(len(rois), features[0].size(1), *output_size, generator=generator, dtype=dtype)
        cases.append(
            dict(
                kind=kind,
                normal_rows=[0, 1, *range(len(mixed) - len(normal) + 2, len(mixed))] if kind == "mixed" else [],
                features=features,
                rois=rois,
                scales=scales,
                output_size=output_size,
                sampling_ratio=-1,
                aligned=False,
                grad_out=grad_out,
            )
        )
    return cases


def check_huge_box_results(cases, results, expected_fn, torchvision_fn):
    """The outputs and gradients of every engine and layout for huge_box_cases.

    mixed: the normal RoIs equal torchvision's (torchvision_fn(case, rows)), and so does the
    gradient (the huge boxes add ~1e-15); the huge RoIs finish with the formula's values.
    exact: the formula's values (expected_fn(case): output, gradients) to float rounding,
    relative to their size (~1e-14), which pins the sample positions and the divisor (the
    whole grid, not the samples visited). rounded: rounding of coordinates ~1e8-1e29 decides
    which samples land on the map (differently with FMA contraction), so only the size is
    pinned: at most (on-map samples) / (grid samples) of the map's values, below 1e-11 here
    (each bin that reaches the map has over 1e15 samples, at most ~1e5 of them on the map).
    """
    for case, result in zip(cases, results):
        dtype = case["rois"].dtype
        expected, expected_grads = expected_fn(case)
        tight = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
        for (engine, layout), (out, grads) in result.items():
            where = f"{case['kind']} boxes, {engine}, {layout}, {dtype}"
            assert out.isfinite().all() and all(g.isfinite().all() for g in grads), where
            if case["kind"] == "mixed":
                normal = case["normal_rows"]
                huge = [i for i in range(len(out)) if i not in normal]
                tv_out, tv_grads = torchvision_fn(case, normal)
                atol = 1e-4 if dtype == torch.float32 else 1e-10  # test_roi_align.py's tolerances
                torch.testing.assert_close(out[normal], tv_out, atol=atol, rtol=0, msg=where)
                for grad, tv_grad in zip(grads, tv_grads):
                    torch.testing.assert_close(grad, tv_grad, atol=atol, rtol=0, msg=where)
                torch.testing.assert_close(out[huge], expected[huge], atol=1e-11, rtol=0, msg=where)
            elif case["kind"] == "exact":
                scale = expected.abs().max().item()
                assert scale > 0, "the exactly-known boxes should have samples on the map"
                torch.testing.assert_close(out / scale, expected / scale, **tight, msg=where)
                grad_scale = max(g.abs().max().item() for g in expected_grads)
                for grad, expected_grad in zip(grads, expected_grads):
                    torch.testing.assert_close(grad / grad_scale, expected_grad / grad_scale, **tight, msg=where)
            else:
                torch.testing.assert_close(out, expected, atol=1e-11, rtol=0, msg=where)
                for grad, expected_grad in zip(grads, expected_grads):
                    torch.testing.assert_close(grad, expected_grad, atol=1e-11, rtol=0, msg=where)


def outcomes(calls):
    """For run_in_child: ("ok", output shape) or (exception type, message) of each
    (op name in msrcnn_fast.ops, args, kwargs)."""
    from msrcnn_fast import ops

    results = []
    for name, args, kwargs in calls:
        try:
            results.append(("ok", tuple(getattr(ops, name)(*args, **kwargs).shape)))
        except Exception as e:  # noqa: BLE001 - the test looks at which one
            results.append((type(e).__name__, str(e)))
    return results


def _child_main(connection, fn, args):
    try:
        result = fn(*args)
        buffer = io.BytesIO()
        torch.save(result, buffer)
        connection.send(("ok", buffer.getvalue()))
    except BaseException:  # noqa: BLE001 - every failure goes back to the test
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def run_in_child(fn, *args, timeout=90.0):
    """fn(*args) in a fresh (spawned) process: its result, or an AssertionError when it raises
    or runs past `timeout` seconds (a hang fails the test instead of blocking the suite)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, fn, args), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise AssertionError(f"{fn.__name__} did not finish within {timeout:.0f} s")
        status, payload = receiver.recv()
    finally:
        if process.is_alive():
            process.kill()
        process.join()
    if status != "ok":
        raise AssertionError(f"{fn.__name__} failed in the child process:\n{payload}")
    return torch.load(io.BytesIO(payload))


def to_payload(cases):
    """Bytes for pool_with_every_engine: a list of dicts of its arguments."""
    buffer = io.BytesIO()
    torch.save(cases, buffer)
    return buffer.getvalue()


def boxes_far_larger_than(height, width, spatial_scale, generator):
    """Tensor[4, 5] of boxes 50 to 200 times a height x width map (in image coordinates for
    `spatial_scale`), each crossing it: the map at a random place inside, or at an edge."""
    factors = [(50, 50), (90, 140), (200, 40), (60, 200)]
    rows = []
    for i, (fh, fw) in enumerate(factors):
        box_h, box_w = fh * height, fw * width
        # Fraction of the box before the map: random, 0 (the box starts at the map) or ~1 (ends in it).
        before = [torch.rand(2, generator=generator).tolist(), [0.0, 0.0], [0.999, 0.3], [0.5, 0.999]][i]
        y1, x1 = -before[0] * box_h, -before[1] * box_w
        rows.append([i % 2, x1, y1, x1 + box_w, y1 + box_h])
    return torch.tensor(rows) / torch.tensor([1.0, spatial_scale, spatial_scale, spatial_scale, spatial_scale])
