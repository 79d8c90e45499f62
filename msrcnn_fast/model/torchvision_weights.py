"""Reading a torchvision Mask R-CNN's weights into our models (the state_dict keys they differ in)."""

import re

from torch import Tensor

__all__ = ["is_torchvision_state_dict", "torchvision_to_msrcnn_state_dict"]


def is_torchvision_state_dict(state: dict[str, Tensor]) -> bool:
    return any(k.startswith("roi_heads.mask_predictor.") for k in state)


def torchvision_to_msrcnn_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Renames torchvision's mask head and predictor keys to MaskHead's; the rest is shared."""
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^roi_heads\.mask_head\.(\d+)\.0\.", r"roi_heads.mask_head.convs.\1.", key)
        key = re.sub(
            r"^roi_heads\.mask_head\.mask_fcn(\d+)\.", lambda m: f"roi_heads.mask_head.convs.{int(m[1]) - 1}.", key
        )
        key = key.replace("roi_heads.mask_predictor.conv5_mask.", "roi_heads.mask_head.deconv.")
        key = key.replace("roi_heads.mask_predictor.mask_fcn_logits.", "roi_heads.mask_head.predictor.")
        renamed[key] = value
    return renamed
