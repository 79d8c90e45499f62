"""The MaskIoU head of Mask Scoring R-CNN (Huang et al., CVPR 2019, Fig. 3)."""

import torch
from torch import Tensor, nn

from msrcnn_fast.ops import Conv3x3
from msrcnn_fast.ops.bf16 import InferenceBf16Linear

__all__ = ["MaskIoUHead"]


class MaskIoUHead(nn.Module):
    """Predicts the IoU of each RoI's predicted mask with its ground truth, per class.

    Input: [N, in_channels, roi_size, roi_size], the RoI features of the mask branch (256
    channels, before the mask head's convs) concatenated with the max-pooled (k=2, s=2) sigmoid
    of the mask head's 28x28 logits of one class. Layers: conv3x3 in_channels->conv_dim,
    conv3x3 conv_dim->conv_dim twice, conv3x3 conv_dim->conv_dim stride 2 (14 -> 7), each + ReLU;
    FC -> fc_dim + ReLU, FC fc_dim -> fc_dim + ReLU, FC fc_dim -> num_classes. Output: [N,
    num_classes], the predicted MaskIoU of each class (no activation).

    Args (keyword-only):
        num_classes: classes including the background (81 for COCO, as torchvision counts).
        in_channels: input channels (256 RoI features + 1 mask).
        conv_dim: width of the four convs.
        fc_dim: width of the first two FCs.
        roi_size: spatial size of the input (the FC input is conv_dim x ceil(roi_size / 2)^2).
        bf16_inference: the stride-2 conv and the first two FCs compute in bfloat16 at inference
            on CPUs where that pays (ops.bf16); the last FC stays float32.

    Init (paper code): convs Kaiming normal (fan_out, ReLU), FCs Kaiming uniform (a=1), the last
    FC normal with std 0.01, biases 0.
    """

    def __init__(
        self,
        *,
        num_classes: int = 81,
        in_channels: int = 257,
        conv_dim: int = 256,
        fc_dim: int = 1024,
        roi_size: int = 14,
        bf16_inference: bool = False,
    ):
        super().__init__()
        for name, value in [
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("conv_dim", conv_dim),
            ("fc_dim", fc_dim),
            ("roi_size", roi_size),
        ]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.in_channels = in_channels
        self.roi_size = roi_size
        self.convs = nn.Sequential(
            Conv3x3(in_channels, conv_dim, relu=True),
            Conv3x3(conv_dim, conv_dim, relu=True),
            Conv3x3(conv_dim, conv_dim, relu=True),
            Conv3x3(conv_dim, conv_dim, stride=2, relu=True, bf16_inference=bf16_inference),
        )
        pooled = (roi_size - 1) // 2 + 1
        linear = InferenceBf16Linear if bf16_inference else nn.Linear
        self.fc1 = linear(conv_dim * pooled * pooled, fc_dim)
        self.fc2 = linear(fc_dim, fc_dim)
        self.predictor = nn.Linear(fc_dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        expected = (self.in_channels, self.roi_size, self.roi_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x: expected a Tensor[N, {', '.join(map(str, expected))}], got shape {tuple(x.shape)}")
        x = self.convs(x)
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.predictor(x)
