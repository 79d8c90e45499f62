"""The mask head's upsampling and one-class predictor, fused (Mask R-CNN inference).

Mask R-CNN's mask head ends in ConvTranspose2d(Cin, C, 2, stride=2) + ReLU and a 1x1 conv to
every class's logits, of which inference reads one class per RoI (the predicted one). The
upsampled features [N, C, 2H, 2W] are an intermediate only: at 100 detections of 256 channels
at 14 x 14 they are 80 MB, written, faulted into fresh memory and read back.
``torch.ops.msrcnn.mask_class_logits`` (csrc/ops/mask_class_logits) computes each RoI's class
logits [N, 1, 2H, 2W] straight from the features: the transposed convolution as a GEMM in
cache-sized blocks, each block reduced at once by ReLU and the class's weights.

Gradients (``torch.library.register_autograd``) recompute the upsampled features with ATen:
the op is made for inference, where nothing is saved; training keeps the unfused layers, whose
features autograd saves anyway.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

__all__ = ["mask_class_logits"]


def mask_class_logits(
    features: Tensor, deconv_weight: Tensor, deconv_bias: Tensor, class_weight: Tensor, class_bias: Tensor
) -> Tensor:
    """Each RoI's mask logits of one class, from the mask head's last features.

    Equals ``baddbmm(class_bias, class_weight[:, None], relu(conv_transpose2d(features,
    deconv_weight, deconv_bias, stride=2)).flatten(2))`` as [N, 1, 2H, 2W], up to float rounding.

    Args:
        features: Tensor[N, Cin, H, W], floating, any memory format (channels-last reads as is).
        deconv_weight: Tensor[Cin, C, 2, 2], a ConvTranspose2d(Cin, C, 2, stride=2)'s weight.
        deconv_bias: Tensor[C].
        class_weight: Tensor[N, C], each RoI's row of the 1x1 predictor's weight (its class's).
        class_bias: Tensor[N], each RoI's class's predictor bias.

    Returns:
        Tensor[N, 1, 2H, 2W] logits, the features' dtype. On the CPU half computes in float32,
        and bfloat16 takes the transposed convolution's GEMM in bfloat16 (float32 accumulation,
        the product rounded to bfloat16, as ATen's bfloat16 conv_transpose2d rounds its output;
        2x float32's speed on AMD's AVX-512 BF16) and the rest in float32. N = 0 gives an empty
        output.

    Raises:
        ValueError: a shape that does not match the others (the message names it), tensors on
            different devices.
        TypeError: non-floating features, or another argument of another dtype.
    """
    return torch.ops.msrcnn.mask_class_logits(features, deconv_weight, deconv_bias, class_weight, class_bias)


@torch.library.register_fake("msrcnn::mask_class_logits")
def _fake(features, deconv_weight, deconv_bias, class_weight, class_bias):
    op = "msrcnn::mask_class_logits"
    torch._check_value(
        features.dim() == 4, lambda: f"{op}: expected features to have 4 dimensions, got {tuple(features.shape)}"
    )
    torch._check_type(
        features.dtype.is_floating_point,
        lambda: f"{op}: expected features to be a floating-point tensor, got {features.dtype}",
    )
    n, in_channels, height, width = features.shape
    torch._check_value(
        deconv_weight.dim() == 4 and deconv_weight.shape[0] == in_channels and deconv_weight.shape[2:] == (2, 2),
        lambda: f"{op}: expected deconv_weight of shape [{in_channels}, C, 2, 2], got {tuple(deconv_weight.shape)}",
    )
    channels = deconv_weight.shape[1]
    for name, t, shape in [
        ("deconv_bias", deconv_bias, (channels,)),
        ("class_weight", class_weight, (n, channels)),
        ("class_bias", class_bias, (n,)),
    ]:
        message = f"{op}: expected {name} of shape {list(shape)}, got {tuple(t.shape)}"
        torch._check_value(tuple(t.shape) == shape, lambda message=message: message)
    return features.new_empty((n, 1, 2 * height, 2 * width))


def _setup_context(ctx, inputs, output):
    features, deconv_weight, deconv_bias, class_weight, _ = inputs
    ctx.save_for_backward(features, deconv_weight, deconv_bias, class_weight)


def _backward(ctx, grad):
    features, deconv_weight, deconv_bias, class_weight = ctx.saved_tensors
    pre = F.conv_transpose2d(features, deconv_weight, deconv_bias, stride=2)
    upsampled = torch.relu(pre)
    n, channels = class_weight.shape
    grad_flat = grad.reshape(n, 1, -1).to(pre.dtype)
    grad_class_weight = torch.bmm(grad_flat, upsampled.flatten(2).transpose(1, 2)).reshape(n, channels)
    grad_class_bias = grad_flat.sum(dim=(1, 2))
    grad_pre = (grad.to(pre.dtype) * class_weight[:, :, None, None]) * (pre > 0)
    grad_features, grad_deconv_weight, grad_deconv_bias = torch.ops.aten.convolution_backward(
        grad_pre,
        features,
        deconv_weight,
        [channels],
        stride=[2, 2],
        padding=[0, 0],
        dilation=[1, 1],
        transposed=True,
        output_padding=[0, 0],
        groups=1,
        output_mask=list(ctx.needs_input_grad[:3]),
    )
    return grad_features, grad_deconv_weight, grad_deconv_bias, grad_class_weight, grad_class_bias


torch.library.register_autograd("msrcnn::mask_class_logits", _backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.msrcnn.mask_class_logits)
def _flops(features_shape, deconv_weight_shape, *args, out_shape, **kwargs) -> int:
    n, in_channels, height, width = features_shape
    channels = deconv_weight_shape[1]
    # The transposed convolution's GEMM and the class's dot product, 2 FLOPs per multiply-add.
    return 2 * n * height * width * 4 * channels * (in_channels + 1)
