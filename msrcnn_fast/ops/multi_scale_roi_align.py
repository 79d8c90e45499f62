"""Fused multi-level RoIAlign, a drop-in for ``torchvision.ops.MultiScaleRoIAlign``.

torchvision maps each RoI to an FPN level (FPN paper, eq. 1), then runs one roi_align per
level on the gathered RoIs and scatters the results back. Here one kernel does it all: the
level is chosen per RoI inside the kernel (``torch.ops.msrcnn.multi_level_roi_align``),
forward and backward, with no per-level gather/scatter.
"""

import math

import torch
import torchvision.ops
from torch import Tensor
from torch.jit.annotations import BroadcastingList2

from msrcnn_fast.ops._rois import Boxes, as_rois, is_channels_last, pair
from msrcnn_fast.ops.errors import ArgumentValueError, call_dropin
from msrcnn_fast.ops.roi_align import check_fake_args, check_int_args

__all__ = ["MultiScaleRoIAlign", "multi_level_roi_align"]


@torch.fx.wrap
def multi_level_roi_align(
    features: list[Tensor],
    boxes: Boxes,
    output_size: BroadcastingList2[int],
    spatial_scales: list[float],
    sampling_ratio: int = -1,
    aligned: bool = False,
    canonical_scale: int = 224,
    canonical_level: int = 4,
) -> Tensor:
    """RoIAlign of each box from the feature map its size selects, in one kernel.

    Args:
        features: feature maps Tensor[N, C, H_i, W_i], finest first, one dtype and device.
        boxes: Tensor[K, 5] of (batch index, x1, y1, x2, y2) or a list of Tensor[L, 4].
        output_size: (height, width) of each pooled region, or one int.
        spatial_scales: one scale per map (feature-map size / image size).
        sampling_ratio, aligned: as in :func:`msrcnn_fast.ops.roi_align` (a fixed
            sampling_ratio is at most ``MAX_SAMPLING_RATIO``, 1024; <= 0 is adaptive).
        canonical_scale, canonical_level: a box of sqrt(area) = canonical_scale maps to FPN
            level canonical_level. A box maps to floor(canonical_level + log2(sqrt(area) /
            canonical_scale) + 1e-6), clamped to the levels of the first and last map
            (level = -log2(scale)); boxes of negative area get zeros, as in torchvision.

    Returns:
        Tensor[K, C, output_size[0], output_size[1]]. A RoI with a NaN or infinite coordinate
        pools to zeros and gets no gradient; the others are unaffected. As in
        :func:`msrcnn_fast.ops.roi_align`, only the samples on the map are visited: a box far
        larger than its map (1e9 or 1e30 pixels) finishes at once and pools to ~0.
    """
    if len(features) == 0:
        raise ArgumentValueError("features: expected at least one feature map, got none")
    rois = as_rois(boxes, features[0])
    pooled_height, pooled_width = pair(output_size)
    if torch.jit.is_scripting():
        return torch.ops.msrcnn.multi_level_roi_align(
            features,
            rois,
            spatial_scales,
            pooled_height,
            pooled_width,
            sampling_ratio,
            aligned,
            canonical_scale,
            canonical_level,
        )
    check_int_args((pooled_height, pooled_width), sampling_ratio)
    return call_dropin(
        torch.ops.msrcnn.multi_level_roi_align,
        list(features),
        rois,
        [float(s) for s in spatial_scales],
        pooled_height,
        pooled_width,
        sampling_ratio,
        aligned,
        canonical_scale,
        canonical_level,
    )


def _infer_scale(feature: Tensor, original_size: list[int]) -> float:
    """Nearest power of two to feature height / image height (torchvision's heuristic); from the
    widths for a map without rows (whose boxes then pool zeros)."""
    for i in range(2):
        size, original = feature.size(2 + i), original_size[i]
        if size > 0 and original > 0:
            return 2.0 ** round(math.log(float(size) / float(original)) / math.log(2.0))
    raise ArgumentValueError(
        "x: cannot infer the scale of a feature map of size "
        + str(feature.shape[-2:])
        + " for images of size "
        + str(original_size)
    )


# The helpers of MultiScaleRoIAlign.forward that read the values of its arguments are leaves
# for torch.fx (torch.fx.wrap), as torchvision's: a traced model calls them, and the module
# itself traces, so torchvision.models.feature_extraction works on a model that holds it.
@torch.fx.wrap
def _filter_input(x: dict[str, Tensor], featmap_names: list[str]) -> list[Tensor]:
    """The maps named in featmap_names, in the dict's order."""
    features: list[Tensor] = []
    for name, feature in x.items():
        if name in featmap_names:
            features.append(feature)
    if len(features) == 0:
        raise ArgumentValueError(
            "x: none of the feature maps " + str(featmap_names) + " is in the input (" + str(list(x.keys())) + ")"
        )
    return features


@torch.fx.wrap
def _setup_scales(features: list[Tensor], image_shapes: list[tuple[int, int]]) -> list[float]:
    """The scale of each map, from its size and the largest image's."""
    if len(image_shapes) == 0:
        raise ArgumentValueError("image_shapes: expected at least one image size, got none")
    max_height = 0
    max_width = 0
    for shape in image_shapes:
        max_height = max(max_height, shape[0])
        max_width = max(max_width, shape[1])
    return [_infer_scale(f, [max_height, max_width]) for f in features]


class MultiScaleRoIAlign(torchvision.ops.MultiScaleRoIAlign):
    """Multi-scale RoIAlign pooling with torchvision's call, level mapping and scale inference,
    in one kernel (:func:`multi_level_roi_align`).

    A subclass of torchvision's ``MultiScaleRoIAlign``: its arguments (``featmap_names``,
    ``output_size``, ``sampling_ratio``, keyword-only ``canonical_scale`` and
    ``canonical_level``), attributes and repr, so torchvision's detectors accept it as their
    ``box_roi_pool`` / ``mask_roi_pool`` and its feature extraction keeps it a graph leaf. A
    fixed ``sampling_ratio`` is at most 1024 (<= 0: adaptive), as :func:`roi_align`.

    As torchvision's, the scales are inferred on the first call from the feature-map and
    image sizes and kept for later calls (not while torch.fx traces it: the traced graph
    infers them on each call until they are set). It can be scripted (``torch.jit.script``).
    """

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Pools every box from its level.

        Args:
            x: feature maps by name; only ``featmap_names`` are used, in the dict's order.
            boxes: one Tensor[L, 4] per image, (x1, y1, x2, y2) in image coordinates.
            image_shapes: (height, width) of each image before the backbone.
        """
        features = _filter_input(x, self.featmap_names)
        scales = self.scales
        if scales is None:
            scales = _setup_scales(features, image_shapes)
            if torch.jit.is_scripting():
                self.scales = scales
            elif not isinstance(scales, torch.fx.Proxy):
                self.scales = scales
        return multi_level_roi_align(
            features,
            boxes,
            [self.output_size[0], self.output_size[1]],
            scales,
            self.sampling_ratio,
            False,
            self.canonical_scale,
            self.canonical_level,
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )


@torch.library.register_fake("msrcnn::multi_level_roi_align")
def _multi_level_roi_align_fake(
    features,
    rois,
    spatial_scales,
    pooled_height,
    pooled_width,
    sampling_ratio,
    aligned,
    canonical_scale,
    canonical_level,
):
    op = "msrcnn::multi_level_roi_align"
    torch._check_value(len(features) > 0, lambda: f"{op}: expected at least one feature map")
    check_fake_args(op, features, [f"feature map {i}" for i in range(len(features))], rois)
    first = features[0]
    return first.new_empty((rois.size(0), first.size(1), pooled_height, pooled_width))


@torch.library.register_fake("msrcnn::_multi_level_roi_align_backward")
def _multi_level_roi_align_backward_fake(
    grad,
    rois,
    spatial_scales,
    pooled_height,
    pooled_width,
    sampling_ratio,
    aligned,
    canonical_scale,
    canonical_level,
    batch_size,
    channels,
    heights,
    widths,
    channels_last,
):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return [
        torch.empty((batch_size, channels, h, w), dtype=grad.dtype, device=grad.device, memory_format=memory_format)
        for h, w in zip(heights, widths)
    ]


def _setup_context(ctx, inputs, output):
    features, rois, spatial_scales, pooled_height, pooled_width, sampling_ratio, aligned, *canonical = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scales, pooled_height, pooled_width, sampling_ratio, aligned, *canonical)
    ctx.batch_channels = (features[0].size(0), features[0].size(1))
    ctx.heights = [f.size(2) for f in features]
    ctx.widths = [f.size(3) for f in features]
    ctx.channels_last = is_channels_last(features)


def _backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    grads = torch.ops.msrcnn._multi_level_roi_align_backward(
        grad, rois, *ctx.args, *ctx.batch_channels, ctx.heights, ctx.widths, ctx.channels_last
    )
    return list(grads), None, None, None, None, None, None, None, None


torch.library.register_autograd("msrcnn::multi_level_roi_align", _backward, setup_context=_setup_context)
