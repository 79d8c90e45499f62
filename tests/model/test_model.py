"""Mask Scoring R-CNN: factories, the torchvision contract, heads, losses and options.

Small images and narrow heads keep it fast; the paper's widths are checked by tests/model
FLOPs tests and the benchmarks.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, roi_align

from msrcnn_fast import model as models
from msrcnn_fast.model.backbone import DeformableConv2d
from msrcnn_fast.model.box_head import BoxHead
from msrcnn_fast.ops import MultiScaleRoIAlign
from msrcnn_fast.ops._reference import batched_soft_nms_reference
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


def overlapping_targets(images):
    """Rectangles of different classes that overlap one another."""
    objects = [
        [([10, 10, 70, 70], 1), ([40, 30, 110, 90], 2), ([20, 50, 80, 110], 3), ([90, 10, 140, 60], 1)],
        [([30, 20, 90, 80], 1), ([36, 26, 96, 86], 3), ([80, 50, 140, 110], 1)],
    ]
    targets = []
    for image, image_objects in zip(images, objects):
        masks = torch.zeros(len(image_objects), *image.shape[1:], dtype=torch.uint8)
        for mask, ((x1, y1, x2, y2), _) in zip(masks, image_objects):
            mask[y1:y2, x1:x2] = 1
        boxes = torch.tensor([box for box, _ in image_objects], dtype=torch.float32)
        targets.append({"boxes": boxes, "labels": torch.tensor([label for _, label in image_objects]), "masks": masks})
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
    # Every trainable parameter (the MaskIoU head's included) gets a gradient.
    without_gradient = [
        name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert not without_gradient


def test_box_head_convs_run_gn_convs_before_the_fcs():
    """box_head_convs=N: N x (3x3 conv, GroupNorm + ReLU) before fc6 (the from-scratch head); they
    run msrcnn::conv3x3 and msrcnn::group_norm_relu, train, keep the state dict's indices (the
    ReLU's slot an Identity), and N=0 keeps torchvision's names."""
    model = small_model(box_head_convs=2).train()
    head = model.roi_heads.box_head
    assert [type(m).__name__ for m in head.convs] == ["Conv3x3", "GroupNormReLU", "Identity"] * 2
    assert head.convs[1].num_groups == 32 and head.convs[1].relu and head.fc6.in_features == 32 * 7 * 7
    assert {k for k in head.state_dict() if k.startswith("convs.")} == {
        "convs.0.weight",
        "convs.1.weight",
        "convs.1.bias",
        "convs.3.weight",
        "convs.4.weight",
        "convs.4.bias",
    }
    batch = images()
    sum(model(batch, make_targets(batch)).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.convs.parameters())
    plain = BoxHead(in_channels=16, fc_dim=8)
    assert set(plain.state_dict()) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    assert BoxHead(in_channels=48, fc_dim=8, num_convs=1).convs[1].num_groups == 24  # divides 48


def test_maskiou_loss_reaches_mask_head_and_backbone():
    """Nothing on the MaskIoU head's input side is detached (docs/semantics.md)."""
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
    # Equal up to rounding: the two predictors round differently, and the 3x3 convs' Winograd
    # F(4x4, 3x3) (~1e-4 of their outputs' scale) carries that back to the stem's weight gradient.
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], atol=1e-5, rtol=3e-4, msg=name)


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


class RoIHeadsRecorder:
    """What the RoI heads receive and what the MaskIoU head reads and predicts, seen through
    module hooks only (the heads' internals are free to change)."""

    def __init__(self, model):
        heads = model.roi_heads
        self.mask_head = heads.mask_head
        self.calls = []
        heads.register_forward_pre_hook(self.roi_heads_input)
        heads.mask_roi_pool.register_forward_hook(self.mask_roi_pool_output)
        heads.maskiou_head.register_forward_pre_hook(self.maskiou_head_input)
        heads.maskiou_head.register_forward_hook(self.maskiou_head_output)

    def roi_heads_input(self, module, args):
        features, _, image_shapes, targets = args  # GeneralizedRCNN's call; targets transformed
        self.calls.append({"features": features, "image_shapes": image_shapes, "targets": targets})

    def mask_roi_pool_output(self, module, args, output):
        self.calls[-1]["boxes"] = [b.detach() for b in args[1]]
        self.calls[-1]["roi_features"] = output.detach()

    def maskiou_head_input(self, module, args):
        self.calls[-1]["maskiou_input"] = args[0].detach()

    def maskiou_head_output(self, module, args, output):
        self.calls[-1]["maskiou_output"] = output.detach()

    def mask_logits(self, call):
        """Every class's 28x28 mask logits of the recorded RoIs (the mask head's definition)."""
        with torch.no_grad():
            return self.mask_head(call["roi_features"])


def reference_maskiou_input(variant, call, mask_logits, labels):
    """Paper, Table 4, in plain PyTorch: (a) the sigmoid of the class's 28x28 mask logits,
    2x2 max-pooled, concatenated to the 14x14 RoI features; (b) that pooled mask multiplied into
    them; (c) all classes' pooled masks concatenated; (d) the unpooled mask concatenated to
    28x28 RoI features; (e) the pooled mask only; (f) the RoI features only."""
    features = call["roi_features"]
    mask = mask_logits[torch.arange(len(labels)), labels][:, None].sigmoid()
    pooled = F.max_pool2d(mask, 2, 2)
    if variant == "d":
        levels = [name for name in call["features"] if name != "pool"]
        pool_28 = MultiScaleRoIAlign(levels, 28, 2)
        features_28 = pool_28(call["features"], call["boxes"], call["image_shapes"]).detach()
        return torch.cat([features_28, mask], dim=1)
    return {
        "a": lambda: torch.cat([features, pooled], dim=1),
        "b": lambda: features * pooled,
        "c": lambda: torch.cat([features, F.max_pool2d(mask_logits.sigmoid(), 2, 2)], dim=1),
        "e": lambda: pooled,
        "f": lambda: features,
    }[variant]()


def reference_maskiou(logits, gt_mask, box):
    """docs/semantics.md's MaskIoU target of one RoI, from scratch: the predicted mask (logit > 0)
    against the ground truth cropped to the box and resized to 28x28 (torchvision's mask target,
    binarised at 0.5), the union counting the whole instance (area inside the box / full area:
    pixels whose centres lie in the box)."""
    height, width = gt_mask.shape
    target = roi_align(gt_mask[None, None].float(), [box[None]], logits.shape, 1.0, -1, False)[0, 0] >= 0.5
    x1, y1, x2, y2 = box.tolist()
    ys, xs = torch.arange(height) + 0.5, torch.arange(width) + 0.5
    inside = ((ys >= y1) & (ys < y2))[:, None] & ((xs >= x1) & (xs < x2))[None, :]
    full = (gt_mask != 0).sum().item()
    ratio = ((gt_mask != 0) & inside).sum().item() / full if full else 0.0
    pred = logits > 0
    overlap = (pred & target).sum().item()
    union = max(pred.sum().item() + target.sum().item() / max(ratio, 1e-10) - overlap, 1.0)
    return overlap / union


def matched_ground_truth(call):
    """Per recorded RoI: (image, ground-truth index, label) of its best-overlapping ground truth
    (a positive: box IoU >= 0.5)."""
    rows = []
    for image, (boxes, target) in enumerate(zip(call["boxes"], call["targets"])):
        iou = box_iou(boxes, target["boxes"])
        best, index = iou.max(dim=1)
        assert torch.all(best >= 0.5)
        rows += [(image, g, int(target["labels"][g])) for g in index.tolist()]
    return rows


def reference_maskiou_entries(call, mask_logits, variant):
    """(row, class, MaskIoU target, sample's target) of every output the Table 5 variant trains:
    the ground-truth class's ("target_class"); each class present in the RoI, i.e. with a
    ground-truth box overlapping it, against its best-overlapping instance, each its own sample
    ("present_classes"); or every class's, the present ones as for "present_classes", 0 for the
    absent ones, a sample being the RoI with its ground-truth class's target ("all_classes")."""
    boxes = torch.cat(call["boxes"])
    entries = []
    for row, (image, g, label) in enumerate(matched_ground_truth(call)):
        target = call["targets"][image]
        own = reference_maskiou(mask_logits[row, label], target["masks"][g], boxes[row])
        present = {label: own}
        if variant != "target_class":
            iou = box_iou(boxes[row][None], target["boxes"])[0]
            for k in sorted(set(target["labels"].tolist()) - {label}):
                of_class = torch.where(target["labels"] == k, iou, torch.zeros_like(iou))
                if of_class.max() > 0:
                    other = target["masks"][int(of_class.argmax())]
                    present[k] = reference_maskiou(mask_logits[row, k], other, boxes[row])
        if variant == "all_classes":
            entries += [(row, k, present.get(k, 0.0), own) for k in range(mask_logits.shape[1])]
        else:
            entries += [(row, k, maskiou, maskiou) for k, maskiou in present.items()]
    return entries


def reference_maskiou_loss(entries, prediction, tau, weight):
    """weight x 0.5 x MSE over the trained outputs of the samples whose target exceeds tau;
    0 when there are none."""
    rows, classes, targets, sample_targets = zip(*entries)
    selected = torch.tensor(sample_targets) > tau
    if not selected.any():
        return torch.zeros(())
    error = prediction[rows, classes] - torch.tensor(targets, dtype=prediction.dtype)
    return weight * 0.5 * error[selected].square().mean()


@pytest.mark.parametrize("variant", ["a", "b", "c", "d", "e", "f"])
def test_maskiou_input_variants_train_and_predict(variant):
    """The MaskIoU head reads Table 4's input, in training (the ground-truth class's mask) and at
    inference (the predicted class's), and its loss and mask scores use its prediction. Float32
    throughout (bf16_inference off): the reference recomputes the mask logits in float32 (the
    bfloat16 path is tested in tests/ops/test_bf16.py)."""
    model = small_model(maskiou_input=variant, box_score_thresh=0.0, bf16_inference=False).train()
    recorder = RoIHeadsRecorder(model)
    batch = images()
    losses = model(batch, make_targets(batch, per_image=(4, 3)))
    (call,) = recorder.calls
    mask_logits = recorder.mask_logits(call)
    labels = torch.tensor([label for _, _, label in matched_ground_truth(call)])
    assert len(set(labels.tolist())) > 1  # the class's mask is told apart from another's
    expected = reference_maskiou_input(variant, call, mask_logits, labels)
    torch.testing.assert_close(call["maskiou_input"], expected, atol=1e-5, rtol=1e-5)
    entries = reference_maskiou_entries(call, mask_logits, "target_class")
    expected_loss = reference_maskiou_loss(entries, call["maskiou_output"], 0.0, 1.0)
    assert expected_loss > 0
    torch.testing.assert_close(losses["loss_maskiou"].detach(), expected_loss)

    model.eval()
    recorder.calls.clear()
    with torch.no_grad():
        out = model(batch)
    (call,) = recorder.calls
    labels = torch.cat([o["labels"] for o in out])
    assert len(set(labels.tolist())) > 1
    expected = reference_maskiou_input(variant, call, recorder.mask_logits(call), labels)
    torch.testing.assert_close(call["maskiou_input"], expected, atol=1e-5, rtol=1e-5)
    maskiou = torch.cat([o["maskiou"] for o in out])
    torch.testing.assert_close(maskiou, call["maskiou_output"][torch.arange(len(labels)), labels])
    for o in out:
        torch.testing.assert_close(o["mask_scores"], o["scores"] * o["maskiou"])


@pytest.mark.parametrize("target", ["target_class", "all_classes", "present_classes"])
@pytest.mark.parametrize("tau", [0.0, 0.5])
def test_maskiou_target_variants(target, tau):
    """Table 5's targets and Table 6's tau against a per-RoI reference of the MaskIoU targets and
    the loss (weight 2, so the weight counts)."""
    model = small_model(maskiou_target=target, maskiou_tau=tau, maskiou_loss_weight=2.0).train()
    recorder = RoIHeadsRecorder(model)
    batch = images()
    losses = model(batch, overlapping_targets(batch))
    (call,) = recorder.calls
    mask_logits = recorder.mask_logits(call)
    entries = reference_maskiou_entries(call, mask_logits, target)
    prediction = call["maskiou_output"]
    expected = reference_maskiou_loss(entries, prediction, tau, 2.0)
    torch.testing.assert_close(losses["loss_maskiou"].detach(), expected)
    # The case tells the options apart: another variant or tau would give another loss.
    for other in {"target_class", "all_classes", "present_classes"} - {target}:
        other_loss = reference_maskiou_loss(reference_maskiou_entries(call, mask_logits, other), prediction, tau, 2.0)
        assert not torch.isclose(other_loss, expected), other
    for other_tau in {0.0, 0.5} - {tau}:
        assert not torch.isclose(reference_maskiou_loss(entries, prediction, other_tau, 2.0), expected), other_tau


class FixedProposals(nn.Module):
    """An RPN (torchvision's contract) that proposes the same boxes in every image."""

    def __init__(self, boxes):
        super().__init__()
        self.boxes = boxes

    def forward(self, images, features, targets=None):
        return [self.boxes.clone() for _ in images.image_sizes], {}


class FixedBoxPredictor(nn.Module):
    """Given class logits per RoI, and zero box deltas (each detection is its proposal)."""

    def __init__(self, class_logits):
        super().__init__()
        self.class_logits = class_logits

    def forward(self, x):
        assert len(x) == len(self.class_logits)
        return self.class_logits.clone(), torch.zeros(len(x), 4 * self.class_logits.shape[1])


def test_soft_nms_decays_the_scores_of_overlapping_boxes_that_hard_nms_removes(monkeypatch):
    """Three class-1 candidates: B overlaps A (IoU 0.77), C overlaps A and B (IoU 0.33 and
    0.36). Hard NMS at 0.5 keeps A and C with their classification scores; Gaussian Soft-NMS
    (sigma 0.6, score threshold 0.001) keeps all three, C and B with decayed scores."""
    a, b, c = [20.0, 20, 80, 80], [24.0, 24, 84, 84], [50.0, 20, 110, 80]
    boxes = torch.tensor([a, b, c])
    logits = torch.tensor([[0.0, 6, 0, 0], [0, 5, 0, 0], [0, 4, 0, 0]])  # the other classes < 0.05
    probabilities = logits.softmax(-1)[:, 1]
    batch = images(1, size=(128, 160))  # NARROW's min/max size: not resized, so boxes stay put
    outputs = {}
    for soft_nms in (False, True):
        model = small_model(soft_nms=soft_nms).eval()
        monkeypatch.setattr(model, "rpn", FixedProposals(boxes))
        monkeypatch.setattr(model.roi_heads, "box_predictor", FixedBoxPredictor(logits))
        with torch.no_grad():
            (outputs[soft_nms],) = model(batch)
    hard, soft = outputs[False], outputs[True]
    assert torch.all(hard["labels"] == 1) and torch.all(soft["labels"] == 1)
    torch.testing.assert_close(hard["boxes"], boxes[[0, 2]])
    torch.testing.assert_close(hard["scores"], probabilities[[0, 2]])
    expected_keep, expected_scores = batched_soft_nms_reference(
        boxes, probabilities, torch.ones(3), sigma=0.6, score_threshold=1e-3
    )
    assert expected_keep.tolist() == [0, 2, 1]
    torch.testing.assert_close(soft["boxes"], boxes[expected_keep])
    torch.testing.assert_close(soft["scores"], expected_scores.float())
    # Only Soft-NMS keeps B, and it decays C's and B's scores below their classification scores.
    assert soft["scores"][1] < probabilities[2] - 0.1 and soft["scores"][2] < probabilities[1] - 0.5


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
        (dict(box_head_convs=-1), "box_head_convs: expected >= 0, got -1"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model(**kwargs)


def test_training_without_targets_is_an_error():
    model = small_model().train()
    with pytest.raises((ValueError, AssertionError), match="targets"):
        model(images())
