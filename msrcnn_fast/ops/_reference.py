"""Plain-PyTorch references of the ops, written from ../shared/SEMANTICS.md and the papers.

Slow and simple on purpose: tests and benchmarks compare the kernels against these.
(RoIAlign is checked against torchvision itself.)
"""

import torch
import torch.nn.functional as F
from torch import Tensor

# ---------------------------------------------------------------------------------------
# mask_pool_concat: the MaskIoU head's input (SEMANTICS.md, "MaskIoU head input"; Table 4).


def mask_pool_concat(
    roi_features: Tensor, mask_logits: Tensor, labels: Tensor | None = None, mode: str = "concat"
) -> Tensor:
    """cat(roi_features, max_pool2d(sigmoid(mask_logits[arange(N), labels]), k, k)) and Table 4's variants."""
    n = roi_features.size(0)
    window = (mask_logits.size(2) // roi_features.size(2), mask_logits.size(3) // roi_features.size(3))
    if mode == "concat_all":
        return torch.cat([roi_features, F.max_pool2d(mask_logits.sigmoid(), window, window)], dim=1)
    if mask_logits.size(1) == 1:
        selected = mask_logits[:, 0]
    else:
        selected = mask_logits[torch.arange(n, device=mask_logits.device), labels]
    pooled = F.max_pool2d(selected[:, None].sigmoid(), window, window)
    if mode == "multiply":
        return roi_features * pooled
    return torch.cat([roi_features, pooled], dim=1)
