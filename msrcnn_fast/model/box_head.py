"""The box head of Mask R-CNN (FPN version): two FC layers, then class scores and box deltas;
optionally 3x3 convolutions with GroupNorm before them (the "4conv1fc"-style head of He et al.,
"Rethinking ImageNet Pre-training", that trains from scratch).

Parameter names are torchvision's (TwoMLPHead.fc6/fc7, FastRCNNPredictor.cls_score/bbox_pred)
so that torchvision checkpoints load unchanged.
"""

from torch import Tensor, nn

from msrcnn_fast.model.backbone import group_count
from msrcnn_fast.ops import GroupNormReLU
from msrcnn_fast.ops.bf16 import InferenceBf16Linear

__all__ = ["BoxHead", "BoxPredictor"]


class BoxHead(nn.Module):
    """[N, C, R, R] pooled RoI features -> [N, fc_dim]: ``num_convs`` x (3x3 conv, GroupNorm,
    ReLU) at ``in_channels`` wide, then FC + ReLU, FC + ReLU. ``bf16_inference``: the FCs
    multiply in bfloat16 at inference on CPUs where that pays (ops.bf16)."""

    def __init__(
        self,
        *,
        in_channels: int = 256,
        roi_size: int = 7,
        fc_dim: int = 1024,
        num_convs: int = 0,
        bf16_inference: bool = False,
    ):
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"box_head_convs: expected >= 0, got {num_convs}")
        self.convs = nn.Sequential()
        for _ in range(num_convs):
            self.convs.extend(
                [
                    nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False),
                    GroupNormReLU(group_count(in_channels), in_channels, relu=True),
                    nn.Identity(),  # the ReLU's place: the state dict's indices stay as they were
                ]
            )
        linear = InferenceBf16Linear if bf16_inference else nn.Linear
        self.fc6 = linear(in_channels * roi_size * roi_size, fc_dim)
        self.fc7 = linear(fc_dim, fc_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x).flatten(start_dim=1)
        return self.fc7(self.fc6(x).relu_()).relu_()


class BoxPredictor(nn.Module):
    """[N, fc_dim] -> class logits [N, num_classes] and per-class box deltas [N, 4 num_classes]."""

    def __init__(self, *, in_channels: int = 1024, num_classes: int = 81):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)
