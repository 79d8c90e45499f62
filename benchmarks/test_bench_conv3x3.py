"""The MaskIoU head's 3x3 convolutions on a GPU: msrcnn_fast's Triton kernels against cuDNN.

Each case times ours (``ops.conv3x3_bias_relu``, backend 'triton') and cuDNN (``F.conv2d`` +
ReLU on the same channels-last input, cuDNN's fastest layout for tensor cores) in the same test
with ``triton.testing.do_bench`` (median of CUDA-event timings; the L2 cache is flushed before
each run), after checking that both compute the same thing. float32 runs TF32 on both sides
(PyTorch's default for cuDNN convolutions, which our kernels follow). Shapes: the MaskIoU head's
layers on 14x14 RoI maps, 100 RoIs (inference: the top 100 detections of an image) and 512 RoIs
(a training batch); and the whole head. A table of times, speedups and TFLOP/s closes the run.

Skipped without a GPU. No speed target is asserted: none has been measured yet (see
docs/triton_conv3x3.md).
"""

import pytest
import torch
import torch.nn.functional as F

from msrcnn_fast import ops
from msrcnn_fast.model import MaskIoUHead

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU for the Triton kernels")

LAYERS = {
    # name: (Cin, Cout, stride)
    "conv1 257->256": (257, 256, 1),
    "conv2 256->256": (256, 256, 1),
    "conv4 256->256 s2": (256, 256, 2),
}
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
_ROWS = []


@pytest.fixture(scope="module", autouse=True)
def speedup_table(request):
    yield
    if not _ROWS:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    reporter.section("conv3x3: msrcnn_fast Triton vs cuDNN (do_bench medians)")
    reporter.write_line(f"{'case':<52} {'cuDNN':>9} {'ours':>9} {'speedup':>8} {'ours TFLOP/s':>13}")
    for case, base, ours, flops in _ROWS:
        reporter.write_line(
            f"{case:<52} {base:>7.3f}ms {ours:>7.3f}ms {base / ours:>7.2f}x {flops / ours / 1e9:>13.1f}"
        )


def _bench(fn):
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def _record(case, base_ms, ours_ms, flops, record_property):
    _ROWS.append((case, base_ms, ours_ms, flops))
    record_property("cudnn_ms", base_ms)
    record_property("ours_ms", ours_ms)
    record_property("speedup", base_ms / ours_ms)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("rois", [100, 512])
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
def test_conv3x3_against_cudnn(direction, layer, rois, dtype, record_property):
    c_in, c_out, stride = LAYERS[layer]
    dt = DTYPES[dtype]
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(rois, c_in, 14, 14, device="cuda", generator=g).to(dt)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(c_out, c_in, 3, 3, device="cuda", generator=g) / (9 * c_in) ** 0.5).to(dt)
    bias = (0.1 * torch.randn(c_out, device="cuda", generator=g)).to(dt)
    ho = (14 - 1) // stride + 1
    macs = rois * c_in * c_out * 9 * ho * ho

    def ours(x, w, b):
        return ops.conv3x3_bias_relu(x, w, b, stride, backend="triton")

    def cudnn(x, w, b):
        return torch.relu(F.conv2d(x, w, b, stride, 1))

    expected = cudnn(x, weight, bias)
    torch.testing.assert_close(ours(x, weight, bias), expected, atol=2e-2, rtol=2e-2)

    if direction == "fwd":
        times = {name: _bench(lambda f=f: f(x, weight, bias)) for name, f in (("cudnn", cudnn), ("ours", ours))}
        flops = 2 * macs
    else:
        grad = torch.randn_like(expected)
        leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]

        def step(f):
            for t in leaves:
                t.grad = None
            f(*leaves).backward(grad)

        times = {name: _bench(lambda f=f: step(f)) for name, f in (("cudnn", cudnn), ("ours", ours))}
        flops = 3 * 2 * macs  # forward, input gradient, weight gradient
    case = f"{layer}, {rois} RoIs, {dtype}, {direction}"
    _record(case, times["cudnn"], times["ours"], flops, record_property)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("rois", [100, 512])
def test_maskiou_head_against_cudnn(rois, dtype, record_property):
    dt = DTYPES[dtype]
    torch.manual_seed(0)
    heads = {
        backend: MaskIoUHead(conv_backend=backend).to(device="cuda", dtype=dt).eval() for backend in ("aten", "triton")
    }
    heads["triton"].load_state_dict(heads["aten"].state_dict())
    x = torch.randn(rois, 257, 14, 14, device="cuda").to(dt)
    with torch.no_grad():
        torch.testing.assert_close(heads["triton"](x), heads["aten"](x), atol=2e-2, rtol=2e-2)
        times = {backend: _bench(lambda h=head: h(x)) for backend, head in heads.items()}
    macs = sum(m.in_channels * m.out_channels * 9 * (14 // m.stride[0]) ** 2 for m in heads["aten"].convs)
    macs += sum(fc.in_features * fc.out_features for fc in (heads["aten"].fc1, heads["aten"].fc2))
    _record(f"MaskIoUHead, {rois} RoIs, {dtype}, fwd", times["aten"], times["triton"], 2 * macs * rois, record_property)
