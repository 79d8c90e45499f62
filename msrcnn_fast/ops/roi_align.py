"""RoIAlign (Mask R-CNN), a drop-in for ``torchvision.ops.roi_align`` / ``RoIAlign``.

Kernels: ``torch.ops.msrcnn.roi_align`` and ``torch.ops.msrcnn._roi_align_backward``
(csrc/ops/roi_align). CPU: parallel over RoIs, interpolation taps shared by all channels,
vectorised over channels for channels-last input, float16/bfloat16 accumulated in float32;
deterministic backward. CUDA: one thread per output element.
"""

import torch
import torchvision.ops
from torch import Tensor
from torch.jit.annotations import BroadcastingList2

from msrcnn_fast.ops._rois import Boxes, as_rois, is_channels_last, pair
from msrcnn_fast.ops.errors import ArgumentValueError, call_dropin

__all__ = ["MAX_SAMPLING_RATIO", "RoIAlign", "roi_align"]

# The largest fixed sampling_ratio (samples per bin side; a bin on the map visits its square):
# kMaxSamplingRatio in csrc/ops/roi_align/roi_align_math.h, checked there for every caller.
MAX_SAMPLING_RATIO = 1024
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def check_int_args(output_size: tuple[int, int], sampling_ratio: int) -> None:
    """Raises ValueError for ints the ops' int64 arguments cannot carry (the kernels check the rest)."""
    if any(isinstance(v, int) and not _INT64_MIN <= v <= _INT64_MAX for v in output_size):
        raise ArgumentValueError(f"output_size: {tuple(output_size)} is too large: sizes must fit int64")
    if isinstance(sampling_ratio, int) and not _INT64_MIN <= sampling_ratio <= _INT64_MAX:
        raise ArgumentValueError(
            f"sampling_ratio: expected an int in [1, {MAX_SAMPLING_RATIO}] (samples per bin side), or <= 0 "
            f"for an adaptive grid, got {sampling_ratio}"
        )


@torch.fx.wrap
def roi_align(
    input: Tensor,
    boxes: Boxes,
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Region of Interest Align (He et al., Mask R-CNN), as ``torchvision.ops.roi_align``.

    Args:
        input: Tensor[N, C, H, W] (float32/64, float16 or bfloat16; NCHW or channels-last).
        boxes: Tensor[K, 5] of (batch index, x1, y1, x2, y2), or a list of Tensor[L, 4], one
            per image, of (x1, y1, x2, y2), in image coordinates.
        output_size: (height, width) of each pooled region, or one int for both; positive. An
            output too large to allocate (or to count in int64) is a ValueError.
        spatial_scale: feature-map size / image size (e.g. 1/16).
        sampling_ratio: samples per bin side, at most ``MAX_SAMPLING_RATIO`` (1024: its square
            is the work per bin); <= 0 means ceil(RoI size / output size) (adaptive).
        aligned: shift box coordinates by -0.5 pixel (pixel-model alignment).

    Returns:
        Tensor[K, C, output_size[0], output_size[1]], contiguous, of input's dtype. A RoI with a
        NaN or infinite coordinate pools to zeros and gets no gradient; the others are unaffected
        (torchvision's CPU kernel crashes on NaN coordinates).

    Each bin averages its whole grid of samples, as torchvision, but only the samples that
    land on the map (within [-1, size] on both axes; the others add zero) are visited, so the
    work per bin is bounded by the map's size whatever the box: a box far larger than the
    map (a diverged prediction: 1e9 or 1e30 pixels) finishes at once and pools to ~0: the
    map's values times the fraction of the grid on the map (5e-13 for a 1e9-pixel box at
    output size 7 on a 100 x 100 map), with gradients as small. Wherever torchvision's kernel
    finishes the result is its result; an adaptive grid side beyond 2^31 - 1 samples (where
    torchvision's int overflows) is clamped to 2^31 - 1.
    """
    rois = as_rois(boxes, input)
    pooled_height, pooled_width = pair(output_size)
    if torch.jit.is_scripting():
        return torch.ops.msrcnn.roi_align(
            input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned
        )
    check_int_args((pooled_height, pooled_width), sampling_ratio)
    return call_dropin(
        torch.ops.msrcnn.roi_align, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned
    )


class RoIAlign(torchvision.ops.RoIAlign):
    """Module form of :func:`roi_align`: torchvision's ``RoIAlign`` (a subclass: its arguments,
    attributes and repr, and what checks for it, such as torchvision's feature extraction that
    keeps its ops' modules as graph leaves) running our kernel."""

    def forward(self, input: Tensor, rois: Boxes) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)


def check_fake_args(op: str, features: list[Tensor], names: list[str], rois: Tensor) -> None:
    """The C++ checks that need no values (csrc/ops/roi_align/roi_align_host.cpp), with its error
    types, for the fake kernels: the meta kernel also runs where only some arguments are meta."""
    for feature, name in zip(features, names):
        if feature.dim() != 4:
            raise ValueError(f"{op}: expected {name} of shape [N, C, H, W], got shape {tuple(feature.shape)}")
        if feature.device != rois.device:
            raise ValueError(f"{op}: expected {name} and rois on one device, got {feature.device} and {rois.device}")
    torch._check_value(
        rois.dim() == 2 and rois.size(1) == 5,
        lambda: f"{op}: expected rois of shape [K, 5] (batch index, x1, y1, x2, y2), got shape {tuple(rois.shape)}",
    )


@torch.library.register_fake("msrcnn::roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    check_fake_args("msrcnn::roi_align", [input], ["input"], rois)
    return input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))


@torch.library.register_fake("msrcnn::_roi_align_backward")
def _roi_align_backward_fake(
    grad,
    rois,
    spatial_scale,
    pooled_height,
    pooled_width,
    batch_size,
    channels,
    height,
    width,
    sampling_ratio,
    aligned,
    channels_last,
):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(
        (batch_size, channels, height, width), dtype=grad.dtype, device=grad.device, memory_format=memory_format
    )


def _setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.pool = (spatial_scale, pooled_height, pooled_width)
    ctx.sampling = (sampling_ratio, aligned)
    ctx.input_shape = tuple(input.shape)
    ctx.channels_last = is_channels_last([input])


def _backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    batch_size, channels, height, width = ctx.input_shape
    grad_input = torch.ops.msrcnn._roi_align_backward(
        grad, rois, *ctx.pool, batch_size, channels, height, width, *ctx.sampling, ctx.channels_last
    )
    return grad_input, None, None, None, None, None, None


torch.library.register_autograd("msrcnn::roi_align", _backward, setup_context=_setup_context)
