"""The mask head of Mask R-CNN, as Mask Scoring R-CNN uses it (He et al., ICCV 2017)."""

import torch
from torch import Tensor, nn

from msrcnn_fast.ops import Conv3x3, mask_class_logits
from msrcnn_fast.ops.bf16 import bf16_pays

__all__ = ["MaskHead", "class_mask_logits", "upsampled_class_logits"]


def class_mask_logits(predictor: nn.Conv2d, features: Tensor, labels: Tensor) -> Tensor:
    """A 1x1 predictor's logits [N, 1, H, W] for one class per RoI (labels [N]).

    Only one class's mask is used per RoI (the ground-truth class in training, the predicted
    class at test), so the predictor is applied for it alone: 1 / num_classes of the work of
    predictor(features)[arange(N), labels], with the same values and gradients (the other
    classes' logits get no gradient there either).
    """
    n, channels = features.shape[:2]
    weight = predictor.weight[labels].reshape(n, channels)
    return _ClassMaskLogits.apply(features, weight, predictor.bias[labels])


def upsampled_class_logits(
    deconv: nn.ConvTranspose2d, predictor: nn.Conv2d, x: Tensor, labels: Tensor, *, bf16_inference: bool = False
) -> Tensor:
    """class_mask_logits(predictor, relu(deconv(x)), labels) [N, 1, 2H, 2W], the mask head's end.

    Where deconv is a 2x2 stride-2 ConvTranspose2d (the mask head's, torchvision's too), its
    output pixels (2h + dy, 2w + dx) are one GEMM of x's pixels (h, w) with the weight
    [Cin, (dy, dx, Cout)], so the upsampled features are never put in image order:
    - where autograd needs none of its gradients (and deconv has a bias), one op
      (msrcnn_fast.ops.mask_class_logits) that never makes the upsampled features
      [N, C, 2H, 2W] at all: at 100 detections of 256 channels at 14 x 14 those are 80 MB;
      with ``bf16_inference``, in bfloat16 where ``ops.bf16.bf16_pays`` (its GEMM 2x faster
      there; the logits returned in float32);
    - in training, the GEMM's rows [N, H*W*4, C] (what autograd saves) and the class logits
      computed on them, only the logits [N, 1, 2H, 2W] reordered: forward and backward 1.7x
      faster than the layers on the demo's mask head (64 RoIs of 64 x 14 x 14; oneDNN's
      channels-last ConvTranspose2d backward runs its reference kernel for the bias gradient).
    Any other deconv runs the layers.
    """
    upsamples_2x2 = (
        deconv.kernel_size == (2, 2)
        and deconv.stride == (2, 2)
        and deconv.padding == (0, 0)
        and deconv.output_padding == (0, 0)
        and deconv.dilation == (1, 1)
        and deconv.groups == 1
    )
    if not upsamples_2x2:
        return class_mask_logits(predictor, torch.relu(deconv(x)), labels)
    if deconv.bias is not None and not _needs_grad(x, deconv, predictor):
        args = (x, deconv.weight, deconv.bias, predictor.weight[labels].flatten(1), predictor.bias[labels])
        if bf16_inference and bf16_pays(x, deconv.weight):
            return mask_class_logits(*(t.to(torch.bfloat16) for t in args)).float()
        return mask_class_logits(*args)
    n, _, height, width = x.shape
    rows = _upsampled_rows(deconv, x)  # [N, H*W*4, C], rows ordered (h, w, dy, dx)
    features = rows.transpose(1, 2).unsqueeze(-1)  # [N, C, H*W*4, 1]: class_mask_logits' layout
    logits = class_mask_logits(predictor, features, labels)  # [N, 1, H*W*4, 1]
    logits = logits.reshape(n, height, width, 2, 2).permute(0, 1, 3, 2, 4)
    return logits.reshape(n, 1, 2 * height, 2 * width)


def _upsampled_rows(deconv: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    """relu(deconv(x)) of a 2x2 stride-2 ConvTranspose2d as rows [N, H*W*4, Cout] ordered
    (h, w, dy, dx): one GEMM of x's pixels [N*H*W, Cin] (a view of channels-last x) with the
    weight [Cin, (dy, dx, Cout)]."""
    n, c_in, height, width = x.shape
    pixels = x.permute(0, 2, 3, 1).reshape(n * height * width, c_in)
    c_out = deconv.weight.size(1)
    weight = deconv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)
    if deconv.bias is None:
        rows = pixels @ weight
    else:
        rows = torch.addmm(deconv.bias.repeat(4), pixels, weight)
    return torch.relu_(rows).reshape(n, height * width * 4, c_out)  # addmm's backward needs no output


def _needs_grad(x: Tensor, *modules: nn.Module) -> bool:
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for module in modules for p in module.parameters())
    )


class _ClassMaskLogits(torch.autograd.Function):
    """logits[n, 0] = sum_c weight[n, c] * features[n, c] + bias[n], for weight [N, C], bias [N].

    Both products are a row vector times features.flatten(2) [N, C, H*W] (a view in NCHW and
    channels-last alike), the form BLAS runs at memory speed in either layout (the column form
    was 3-4x slower on the transposed layout). The features' gradient is the outer product
    grad[n] x weight[n], written directly: autograd's bmm backward would compute it as a
    batched GEMM with an inner dimension of 1, ~15x slower on CPUs.
    """

    @staticmethod
    def forward(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        n, channels, height, width = features.shape
        logits = torch.baddbmm(bias.reshape(n, 1, 1), weight.reshape(n, 1, channels), features.flatten(2))
        return logits.reshape(n, 1, height, width)

    @staticmethod
    def setup_context(ctx, inputs, output):
        features, weight, _ = inputs
        ctx.save_for_backward(features, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):
        features, weight = ctx.saved_tensors
        n, channels = features.shape[:2]
        grad_features = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_features = torch.empty_like(features)
            torch.mul(grad, weight.reshape(n, channels, 1, 1), out=grad_features)
        if ctx.needs_input_grad[1]:
            row = grad.flatten(1).unsqueeze(1).to(features.dtype)  # autocast: grad is in the compute dtype
            grad_weight = torch.bmm(row, features.flatten(2).transpose(1, 2)).reshape(n, channels)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=(1, 2, 3))
        return grad_features, grad_weight, grad_bias


class MaskHead(nn.Module):
    """Per-class mask logits at twice the RoI resolution.

    Input: [N, in_channels, R, R] RoI features (R = 14). Layers: num_convs x (conv3x3 -> conv_dim
    + ReLU), ConvTranspose 2x2 stride 2 -> conv_dim + ReLU, conv1x1 -> num_classes. Output:
    [N, num_classes, 2R, 2R] logits.

    Args (keyword-only):
        num_classes: classes including the background (81 for COCO).
        in_channels: channels of the RoI features.
        conv_dim: width of the convs and the transposed conv.
        num_convs: number of 3x3 convs (4 in Mask R-CNN), msrcnn_fast.ops.Conv3x3 with ReLU.
        bf16_inference: one class's logits (class_logits) at inference in bfloat16 where
            ``ops.bf16.bf16_pays`` (upsampled_class_logits).

    Init (as torchvision's MaskRCNNHeads and MaskRCNNPredictor): every conv Kaiming normal
    (fan_out, ReLU), biases 0.
    """

    def __init__(
        self,
        *,
        num_classes: int = 81,
        in_channels: int = 256,
        conv_dim: int = 256,
        num_convs: int = 4,
        bf16_inference: bool = False,
    ):
        super().__init__()
        for name, value in [("num_classes", num_classes), ("in_channels", in_channels), ("conv_dim", conv_dim)]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not isinstance(num_convs, int) or num_convs < 0:
            raise ValueError(f"num_convs: expected an int >= 0, got {num_convs!r}")
        self.in_channels = in_channels
        self.bf16_inference = bf16_inference
        widths = [in_channels] + [conv_dim] * num_convs
        self.convs = nn.Sequential(*(Conv3x3(a, b, relu=True) for a, b in zip(widths, widths[1:])))
        self.deconv = nn.ConvTranspose2d(widths[-1], conv_dim, 2, stride=2)
        self.predictor = nn.Conv2d(conv_dim, num_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in [*self.convs, self.deconv, self.predictor]:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """All classes' mask logits [N, num_classes, 2R, 2R]."""
        return self.predictor(self.features(x))

    def features(self, x: Tensor) -> Tensor:
        """The upsampled mask features [N, conv_dim, 2R, 2R], before the per-class predictor."""
        return torch.relu_(self.deconv(self.convs(self._checked(x))))

    def class_logits(self, x: Tensor, labels: Tensor) -> Tensor:
        """The mask logits [N, 1, 2R, 2R] of one class per RoI (labels [N]) from the RoI features
        x: predict_classes(features(x), labels), computed without the upsampled features in
        image order (upsampled_class_logits)."""
        features = self.convs(self._checked(x))
        return upsampled_class_logits(self.deconv, self.predictor, features, labels, bf16_inference=self.bf16_inference)

    def _checked(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"x: expected a Tensor[N, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        return x

    def predict_classes(self, features: Tensor, labels: Tensor) -> Tensor:
        """The mask logits [N, 1, 2R, 2R] of one class per RoI (labels [N])."""
        return class_mask_logits(self.predictor, features, labels)
