"""With MaskIoU rescoring off and torchvision's settings, our model is torchvision's Mask R-CNN.

torchvision's maskrcnn_resnet50_fpn with random, seeded weights against (1) from_torchvision of
it and (2) our own msrcnn_resnet50_fpn loading its state_dict: same images, eval. Boxes agree
within 1e-3 (our RoIAlign and torchvision's differ in float rounding only), labels are the
same, and masks agree on >= 99 % of the pixels (a pixel whose probability is within rounding
of 0.5 can flip). RPN pre-NMS top-n is small so that torchvision's batched_nms takes its
exact per-level path rather than its coordinate-offset trick (which perturbs IoUs in float32).
Both run NCHW (channels_last=False) with torchvision's BatchNorm2d (norm="bn", which is what
maskrcnn_resnet50_fpn builds without pretrained weights), so that the convolutions take the
same algorithms: with random weights, scores have near-ties that last-bit differences reorder.
For the same reason our factory runs ATen's convolutions here (exact_aten_convs=True): Winograd's
float32 rounding moves boxes by ~1e-4 relative, above the 1e-3 absolute tolerance; and
its heads stay float32 (bf16_inference=False), not bfloat16 as at inference on AMD's AVX-512 BF16.
Folding frozen batch norm into the convolutions is checked in test_backbone.py.
"""

import pytest
import torch
import torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn

from msrcnn_fast import model as models
from msrcnn_fast.integrations.torchvision import add_mask_scoring, from_torchvision

SETTINGS = dict(
    min_size=256, max_size=320, box_score_thresh=0.0, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=300
)


@pytest.fixture(scope="module")
def torchvision_model():
    torch.manual_seed(0)
    # (Random weights: class scores near 1 / 5, distinct; scaled-up logits would saturate the
    # softmax at 1.0 and tie, and the order of ties is arbitrary in torchvision.)
    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5, **SETTINGS).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 240, 300, generator=g), torch.rand(3, 200, 330, generator=g)]


@pytest.fixture(scope="module")
def expected(torchvision_model, batch):
    with torch.no_grad():
        return torchvision_model(batch)


def assert_same_detections(ours, theirs):
    for o, t in zip(ours, theirs):
        assert len(o["boxes"]) == len(t["boxes"]) > 50
        torch.testing.assert_close(o["boxes"], t["boxes"], atol=1e-3, rtol=0)
        assert torch.equal(o["labels"], t["labels"])
        torch.testing.assert_close(o["scores"], t["scores"], atol=1e-5, rtol=0)
        agreement = (o["masks"] == (t["masks"] > 0.5)).float().mean()
        assert agreement >= 0.99, f"masks agree on {agreement:.4f} of the pixels"


def test_from_torchvision(torchvision_model, batch, expected):
    ours = from_torchvision(torchvision_model, mask_scoring=False, channels_last=False).eval()
    with torch.no_grad():
        assert_same_detections(ours(batch), expected)
    assert isinstance(torchvision_model.roi_heads, torchvision.models.detection.roi_heads.RoIHeads)  # untouched


def test_our_resnet50_with_torchvision_weights(torchvision_model, batch, expected, tmp_path):
    path = tmp_path / "maskrcnn_resnet50_fpn.pt"
    torch.save(torchvision_model.state_dict(), path)
    ours = models.msrcnn_resnet50_fpn(
        num_classes=5,
        weights=str(path),
        mask_scoring=False,
        channels_last=False,
        norm="bn",
        exact_aten_convs=True,
        bf16_inference=False,
        **SETTINGS,
    ).eval()
    with torch.no_grad():
        assert_same_detections(ours(batch), expected)


def test_add_mask_scoring_in_place(torchvision_model, batch, expected):
    import copy

    patched = add_mask_scoring(copy.deepcopy(torchvision_model), channels_last=False)
    with torch.no_grad():
        out = patched(batch)
    for o, t in zip(out, expected):
        torch.testing.assert_close(o["boxes"], t["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(o["mask_scores"], o["scores"] * o["maskiou"])
    patched.train()
    targets = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0]]),
            "labels": torch.tensor([2]),
            "masks": torch.zeros(1, *image.shape[1:], dtype=torch.uint8).index_fill_(1, torch.arange(20, 120), 1),
        }
        for image in batch
    ]
    losses = patched(batch, targets)
    assert "loss_maskiou" in losses and torch.isfinite(losses["loss_maskiou"])
