"""The MaskIoU head's input (Mask Scoring R-CNN, Fig. 3 and Table 4) in one kernel.

``cat(roi_features, max_pool2d(sigmoid(mask_logits[arange(N), labels]), 2, 2))`` reads the
selected class only, takes one sigmoid per pooled value (sigmoid is monotonic, so the
window's maximum logit gives the maximum probability) and writes the output once, with no
intermediate tensors. Kernels: ``torch.ops.msrcnn.mask_pool_concat`` and its backward ops
(csrc/ops/mask_pool_concat); gradients reach both roi_features and mask_logits, as in
MS R-CNN, where neither is detached.

The paper's Table 4 inputs: (a) mode "concat" (default); (b) "multiply"; (c) "concat_all";
(d) 28x28 RoI features with the unpooled mask: "concat" with roi_features of the mask's size
(window 1); (e) the mask alone: roi_features with 0 channels; (f) the RoI features alone need
no op.
"""

import torch
from torch import Tensor, nn

__all__ = ["MODES", "MaskPoolConcat", "mask_pool_concat"]

# Table 4 of the paper: (a) target mask concat RoI, (b) target mask x RoI, (c) all masks concat RoI.
MODES = ("concat", "multiply", "concat_all")


def mask_pool_concat(
    roi_features: Tensor, mask_logits: Tensor, labels: Tensor | None = None, mode: str = "concat"
) -> Tensor:
    """The MaskIoU head's input: RoI features with the predicted mask, max-pooled to their size.

    Args:
        roi_features: Tensor[N, C, S, S] (RoIAlign features of the mask branch, 14x14 in the paper).
        mask_logits: Tensor[N, K, M, M] mask logits of all K classes, or Tensor[N, 1, M, M] of the
            class already selected (labels then unused). M must be a multiple of S: the pooling
            window is (M / S) x (M / S) (2x2 for 28 -> 14; 1x1 pools nothing, Table 4d's 28x28
            RoI features). Same dtype and device as roi_features.
        labels: Tensor[N] int64, the class whose mask each RoI uses (ground-truth class in
            training, predicted class at test). Needed when K > 1 in modes "concat"/"multiply".
        mode: "concat" -> Tensor[N, C + 1, S, S] (the paper's default, Table 4a);
            "multiply" -> Tensor[N, C, S, S], roi_features times the pooled mask (Table 4b);
            "concat_all" -> Tensor[N, C + K, S, S], every class's pooled mask (Table 4c).

    Returns:
        The contiguous output of roi_features' dtype. Where a window holds equal maxima, the
        gradient goes to the first in row-major order, as max_pool2d's; where it holds
        logits whose sigmoids are equal in floating point (|logit| > ~17 in float32), the
        composition with max_pool2d(sigmoid(...)) picks the first of those, this op the
        largest logit: the value is the same and the gradient there is ~0 either way. A NaN
        logit makes its window NaN (max_pool2d propagates NaN); +-inf logits pool to 1 / 0;
        NaN or infinite features pass through (concat) or multiply (multiply). No RoIs give an
        empty output, roi_features with no channels the pooled masks alone (Table 4e).

    Raises:
        ValueError: a label outside [0, K), labels missing (K > 1) or not [N], shapes other
            than those above (roi_features of zero spatial size, K = 0, M not a multiple of S,
            N mismatched), an unknown mode, tensors on different devices.
        TypeError: labels not int64, roi_features and mask_logits not of one floating dtype.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    return torch.ops.msrcnn.mask_pool_concat(roi_features, mask_logits, labels, mode)


class MaskPoolConcat(nn.Module):
    """Module form of :func:`mask_pool_concat` (``mode`` fixed at construction)."""

    def __init__(self, mode: str = "concat"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, roi_features: Tensor, mask_logits: Tensor, labels: Tensor | None = None) -> Tensor:
        return mask_pool_concat(roi_features, mask_logits, labels, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def _output_channels(channels, classes, mode):
    return {"concat": channels + 1, "multiply": channels, "concat_all": channels + classes}[mode]


@torch.library.register_fake("msrcnn::mask_pool_concat")
def _mask_pool_concat_fake(roi_features, mask_logits, labels, mode):
    # The C++ checks that need no values (csrc/ops/mask_pool_concat), with the same error
    # types: the meta kernel runs where any argument is a meta tensor, also beside CPU ones.
    op = "msrcnn::mask_pool_concat"
    torch._check_value(
        mask_logits.device == roi_features.device,
        lambda: (
            f"{op}: expected roi_features and mask_logits on the same device, got "
            f"{roi_features.device} and {mask_logits.device}"
        ),
    )
    torch._check_value(
        roi_features.dim() == 4 and mask_logits.dim() == 4,
        lambda: (
            f"{op}: expected 4-d roi_features and mask_logits, got "
            f"{tuple(roi_features.shape)} and {tuple(mask_logits.shape)}"
        ),
    )
    torch._check_type(
        roi_features.dtype.is_floating_point and roi_features.dtype == mask_logits.dtype,
        lambda: (
            f"{op}: expected roi_features and mask_logits of one floating dtype, got "
            f"{roi_features.dtype} and {mask_logits.dtype}"
        ),
    )
    n, channels, height, width = roi_features.shape
    if mode != "concat_all" and mask_logits.size(1) > 1:
        torch._check_value(
            labels is not None and labels.device == roi_features.device,
            lambda: (
                f"{op}: expected labels (Tensor[N] int64) on the device of mask_logits "
                f"({mask_logits.device}), got {None if labels is None else labels.device}"
            ),
        )
    return roi_features.new_empty((n, _output_channels(channels, mask_logits.size(1), mode), height, width))


@torch.library.register_fake("msrcnn::_mask_pool_concat_backward")
def _mask_pool_concat_backward_fake(grad, mask_logits, labels, roi_features, mode):
    return torch.empty_like(mask_logits, memory_format=torch.contiguous_format)


@torch.library.register_fake("msrcnn::_mask_pool_multiply_features_backward")
def _mask_pool_multiply_features_backward_fake(grad, mask_logits, labels):
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    roi_features, mask_logits, labels, mode = inputs
    ctx.mode = mode
    ctx.channels = roi_features.size(1)
    # The features are read by the multiply mode's backward only.
    ctx.save_for_backward(roi_features if mode == "multiply" else None, mask_logits, labels)


def _backward(ctx, grad):
    roi_features, mask_logits, labels = ctx.saved_tensors
    grad_features = grad_logits = None
    if ctx.needs_input_grad[0]:
        if ctx.mode == "multiply":
            grad_features = torch.ops.msrcnn._mask_pool_multiply_features_backward(grad, mask_logits, labels)
        else:
            grad_features = grad.narrow(1, 0, ctx.channels)  # a view, as cat's backward gives
    if ctx.needs_input_grad[1]:
        grad_logits = torch.ops.msrcnn._mask_pool_concat_backward(grad, mask_logits, labels, roi_features, ctx.mode)
    return grad_features, grad_logits, None, None


torch.library.register_autograd("msrcnn::mask_pool_concat", _backward, setup_context=_setup_context)
