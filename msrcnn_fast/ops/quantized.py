"""Quantized CPU tensors for the torchvision drop-ins (``roi_align``, ``nms``, ``batched_nms``).

torchvision runs these ops on quantized tensors (``torch.quint8``, ``qint8``, ``qint32``,
per-tensor affine), so a quantized detector that calls them must run with ours too. Here the
kernels of the ``QuantizedCPU`` dispatch key dequantize their arguments, run the float CPU
kernel, and (RoIAlign) quantize the output with the input's scale, zero point and dtype: the
result is the float op's on the dequantized values, quantized, which is what torchvision's
quantized kernels approximate (its test allows them a difference of one step on < 5 % of the
outputs). As in torchvision, a quantized RoIAlign takes one image per batch.

Registered on import of ``msrcnn_fast.ops``; the ops' schemas stay in C++.
"""

import torch
from torch import Tensor

from msrcnn_fast.ops.errors import ArgumentValueError

__all__: list[str] = []

_LIBRARY = torch.library.Library("msrcnn", "IMPL")


def _dequantized(tensor: Tensor, name: str, op: str) -> Tensor:
    if not tensor.is_quantized:
        return tensor
    if tensor.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        raise ArgumentValueError(
            f"msrcnn::{op}: expected {name} quantized per tensor (one scale and zero point), got {tensor.qscheme()}"
        )
    return tensor.dequantize()


def _roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    op = "roi_align"
    if input.is_quantized and input.dim() == 4 and input.size(0) > 1:
        raise ArgumentValueError(
            f"msrcnn::{op}: input: Only one image per batch is allowed in roi_align when quantized tensors are "
            f"passed (as torchvision), got {input.size(0)} images"
        )
    output = torch.ops.msrcnn.roi_align(
        _dequantized(input, "input", op),
        _dequantized(rois, "rois", op),
        spatial_scale,
        pooled_height,
        pooled_width,
        sampling_ratio,
        aligned,
    )
    if not input.is_quantized:
        return output
    return torch.quantize_per_tensor(output, input.q_scale(), input.q_zero_point(), input.dtype)


def _nms(boxes, scores, iou_threshold, offset):
    return torch.ops.msrcnn.nms(
        _dequantized(boxes, "boxes", "nms"), _dequantized(scores, "scores", "nms"), iou_threshold, offset
    )


def _batched_nms(boxes, scores, idxs, iou_threshold, offset):
    op = "batched_nms"
    return torch.ops.msrcnn.batched_nms(
        _dequantized(boxes, "boxes", op), _dequantized(scores, "scores", op), idxs, iou_threshold, offset
    )


_LIBRARY.impl("roi_align", _roi_align, "QuantizedCPU")
_LIBRARY.impl("nms", _nms, "QuantizedCPU")
_LIBRARY.impl("batched_nms", _batched_nms, "QuantizedCPU")
