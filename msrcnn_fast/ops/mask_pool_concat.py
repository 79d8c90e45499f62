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
        largest logit: the value is the same and the gradient there is ~0 either way.
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
    torch._check(
        roi_features.dim() == 4 and mask_logits.dim() == 4,
        lambda: (
            f"msrcnn::mask_pool_concat: expected 4-d roi_features and mask_logits, got "
            f"{tuple(roi_features.shape)} and {tuple(mask_logits.shape)}"
        ),
    )
    n, channels, height, width = roi_features.shape
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
