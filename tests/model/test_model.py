"""Mask Scoring R-CNN: factories, the torchvision contract, heads, losses and options.

Small images and narrow heads keep it fast; the paper's widths are checked by tests/model
FLOPs tests and the benchmarks.
"""

import pytest
import torch

from msrcnn_fast import model as models
from msrcnn_fast.model.backbone import DeformableConv2d
from tests.model.conftest import all_classes_then_select

NARROW = dict(
    min_size=128,
    max_size=160,
    box_fc_dim=64,
    mask_conv_dim=16,
    maskiou_conv_dim=16,
    maskiou_fc_dim=32,
    fpn_channels=32,
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=50,
    box_batch_size_per_image=32,
    norm="bn",
    trainable_backbone_layers=5,
)
LOSSES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask", "loss_maskiou"}
OUTPUTS = {"boxes", "labels", "scores", "masks", "mask_scores", "maskiou"}


def make_targets(images, seed=0, classes=4, per_image=(3, 0)):
    """Rectangles (boxes and filled masks) per image; image 2 has no objects."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for image, n in zip(images, per_image):
        _, h, w = image.shape
        boxes, masks = [], torch.zeros(n, h, w, dtype=torch.uint8)
        for i in range(n):
            x1, y1 = int(torch.randint(0, w // 2, (1,), generator=g)), int(torch.randint(0, h // 2, (1,), generator=g))
            x2 = x1 + int(torch.randint(8, w // 2, (1,), generator=g))
            y2 = y1 + int(torch.randint(8, h // 2, (1,), generator=g))
            boxes.append([x1, y1, x2, y2])
            masks[i, y1:y2, x1:x2] = 1
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.randint(1, classes, (n,), generator=g),
                "masks": masks,
            }
        )
    return targets


def images(count=2, size=(120, 150), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, *size, generator=g) for _ in range(count)]


def small_model(factory="msrcnn_resnet18_fpn", **kwargs):
    torch.manual_seed(0)
    return getattr(models, factory)(num_classes=4, **(NARROW | kwargs))


@pytest.mark.parametrize("factory", ["msrcnn_resnet18_fpn", "msrcnn_resnet50_fpn"])
def test_training_returns_the_losses_and_they_backpropagate(factory):
    model = small_model(factory).train()
    batch = images()
    losses = model(batch, make_targets(batch))
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert (
        model.roi_heads.maskiou_head.fc1.weight.grad.abs().sum() > 0
        if hasattr(model.roi_heads.maskiou_head, "fc1")
        else True
    )


def test_maskiou_loss_reaches_mask_head_and_backbone():
    """Nothing on the MaskIoU head's input side is detached (SEMANTICS)."""
    model = small_model().train()
    batch = images()
    losses = model(batch, make_targets(batch, per_image=(4, 3)))
    assert losses["loss_maskiou"] > 0
    losses["loss_maskiou"].backward()
    mask_grads = [p.grad for p in model.roi_heads.mask_head.parameters() if p.grad is not None]
    assert mask_grads and any(g.abs().sum() > 0 for g in mask_grads)
    backbone_grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert backbone_grads and any(g.abs().sum() > 0 for g in backbone_grads)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.roi_heads.box_predictor.parameters())


@pytest.mark.parametrize("variant", ["a", "b", "e"])
def test_training_predicts_the_ground_truth_class_mask_only_with_the_same_losses_and_gradients(variant, monkeypatch):
    """Training applies the mask predictor for each RoI's ground-truth class alone; the losses
    and every gradient equal those of all classes' logits indexed by the labels."""
    batch = images()
    targets = make_targets(batch, per_image=(4, 3))
    model = small_model(maskiou_input=variant).train()
    head = model.roi_heads.mask_head
    results = []
    for one_class in (True, False):
        if not one_class:  # the definition: every class's logits, then each RoI's class
            monkeypatch.setattr(
                head, "predict_classes", lambda x, labels: all_classes_then_select(head.predictor, x, labels)
            )
        model.zero_grad()
        torch.manual_seed(0)  # the same sampled RoIs
        losses = model(batch, targets)
        sum(losses.values()).backward()
        results.append((losses, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}))
    (losses, grads), (expected_losses, expected_grads) = results
    assert losses["loss_mask"] > 0 and losses["loss_maskiou"] > 0
    torch.testing.assert_close(losses, expected_losses)
    assert grads.keys() == expected_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("factory", ["msrcnn_resnet18_fpn", "msrcnn_resnet50_fpn"])
def test_eval_contract_on_a_batch(factory):
    model = small_model(factory, box_score_thresh=0.0).eval()
    batch = images(3, size=(100, 130)) + [torch.rand(3, 90, 160)]
    with torch.no_grad():
        out = model(batch)
    assert len(out) == 4
    for image, detections in zip(batch, out):
        assert set(detections) == OUTPUTS
        k = len(detections["boxes"])
        assert 0 < k <= 100
        assert detections["masks"].shape == (k, 1, *image.shape[1:]) and detections["masks"].dtype == torch.bool
        torch.testing.assert_close(detections["mask_scores"], detections["scores"] * detections["maskiou"])
        assert torch.all(detections["boxes"][:, 2:] <= torch.tensor([image.shape[2], image.shape[1]]))


def test_no_detections_and_no_objects():
    model = small_model(box_score_thresh=1.0).eval()
    with torch.no_grad():
        (out,) = model(images(1))
    assert len(out["boxes"]) == 0 and out["masks"].shape[0] == 0 and out["mask_scores"].shape == (0,)
    model.train()
    batch = images()
    losses = model(batch, make_targets(batch, per_image=(0, 0)))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"] == 0 and losses["loss_maskiou"] == 0


def test_paper_resnet18_uses_c4_and_c5_only():
    model = small_model()
    features = model.backbone(torch.rand(1, 3, 64, 64))
    assert list(features) == ["0", "1", "pool"]
    assert [f.shape[-1] for f in features.values()] == [4, 2, 1]  # strides 16, 32, 64
    assert model.transform.min_size == (128,)  # the NARROW override; the default is 600
    assert models.msrcnn_resnet18_fpn(num_classes=4).transform.min_size == (600,)
    assert models.msrcnn_resnet18_fpn(num_classes=4).transform.max_size == 1000
    assert models.msrcnn_resnet50_fpn(num_classes=4).transform.max_size == 1333


def test_dcn_variant_starts_as_the_plain_network():
    dcn = small_model("msrcnn_resnet101_dcn_fpn", trainable_backbone_layers=5).eval()
    deformable = [m for m in dcn.backbone.body.modules() if isinstance(m, DeformableConv2d)]
    assert len(deformable) == 4 + 23 + 3  # every block of C3-C5
    plain = small_model("msrcnn_resnet101_fpn").eval()
    missing, unexpected = plain.load_state_dict(dcn.state_dict(), strict=False)
    assert not missing and all(".offset." in k for k in unexpected)
    # One layer: zero offsets sample the integer grid, so it is the plain convolution (float
    # rounding of a different summation order aside).
    conv = plain.backbone.body.layer2[0].conv2
    x = torch.randn(2, conv.in_channels, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(dcn.backbone.body.layer2[0].conv2(x), conv(x), atol=1e-4, rtol=1e-4)
        # The whole random 101-layer backbone amplifies that rounding; compare relative to its scale.
        x = torch.rand(1, 3, 64, 64)
        for a, b in zip(dcn.backbone(x).values(), plain.backbone(x).values()):
            torch.testing.assert_close(a, b, atol=1e-3 * b.abs().max().item(), rtol=1e-3)


@pytest.mark.parametrize("variant", ["a", "b", "c", "d", "e", "f"])
def test_maskiou_input_variants_train_and_predict(variant):
    model = small_model(maskiou_input=variant).train()
    batch = images()
    losses = model(batch, make_targets(batch))
    assert torch.isfinite(losses["loss_maskiou"])
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert "maskiou" in out[0]


@pytest.mark.parametrize("target", ["target_class", "all_classes", "present_classes"])
@pytest.mark.parametrize("tau", [0.0, 0.5])
def test_maskiou_target_variants(target, tau):
    model = small_model(maskiou_target=target, maskiou_tau=tau).train()
    batch = images()
    losses = model(batch, make_targets(batch, per_image=(5, 2)))
    assert torch.isfinite(losses["loss_maskiou"]) and losses["loss_maskiou"] >= 0


def test_soft_nms_option_keeps_more_boxes():
    hard = small_model(box_score_thresh=0.0).eval()
    soft = small_model(box_score_thresh=0.0, soft_nms=True).eval()
    batch = images(1)
    with torch.no_grad():
        (h,), (s,) = hard(batch), soft(batch)
    assert len(s["boxes"]) >= len(h["boxes"])
    assert torch.all(s["scores"][:-1] >= s["scores"][1:])


def test_gt_maskiou_at_eval_scores_by_the_true_maskiou():
    model = small_model(box_score_thresh=0.0, gt_maskiou_at_eval=True).eval()
    batch = images(1)
    targets = make_targets(batch, per_image=(3,))
    with torch.no_grad():
        (out,) = model(batch, targets)
    assert torch.all((out["maskiou"] >= 0) & (out["maskiou"] <= 1))
    torch.testing.assert_close(out["mask_scores"], out["scores"] * out["maskiou"])


def test_mask_scoring_off_gives_classification_scores():
    model = small_model(box_score_thresh=0.0, mask_scoring=False).eval()
    with torch.no_grad():
        (out,) = model(images(1))
    assert torch.equal(out["mask_scores"], out["scores"]) and "maskiou" not in out


def test_weights_load_from_a_local_file(tmp_path):
    model = small_model()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.save({"model": model.state_dict(), "iteration": 3}, tmp_path / "checkpoint.pt")
    for name in ("model.pt", "checkpoint.pt"):
        loaded = small_model(weights=str(tmp_path / name))
        for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a, b)
    body = {k[len("backbone.body.") :]: v for k, v in model.state_dict().items() if k.startswith("backbone.body.")}
    torch.save(body, tmp_path / "resnet18.pt")
    with_backbone = small_model(backbone_weights=str(tmp_path / "resnet18.pt"))
    assert torch.equal(with_backbone.backbone.body.conv1.weight, model.backbone.body.conv1.weight)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(norm="sync"), "norm: expected"),
        (dict(trainable_backbone_layers=7), "trainable_layers"),
        (dict(maskiou_input="z"), "maskiou_input"),
        (dict(maskiou_target="some"), "maskiou_target"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model(**kwargs)


def test_training_without_targets_is_an_error():
    model = small_model().train()
    with pytest.raises((ValueError, AssertionError), match="targets"):
        model(images())
