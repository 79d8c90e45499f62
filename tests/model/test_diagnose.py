"""MaskScoringRCNN.diagnose: the detections of a plain forward, and what the heads make of the
ground truth, checked against the heads run by hand."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, roi_align

from tests.model.test_model import images, make_targets, small_model


@pytest.fixture(scope="module")
def diagnosed():
    model = small_model(box_score_thresh=0.0).eval()
    batch = images()
    targets = make_targets(batch, per_image=(3, 0))
    with torch.no_grad():
        plain = model(batch)
        detections, diagnostics = model.diagnose(batch, targets)
    return model, batch, targets, plain, detections, diagnostics


def test_detections_are_the_plain_forwards(diagnosed):
    _, _, _, plain, detections, _ = diagnosed
    for expected, got in zip(plain, detections):
        assert set(got) == set(expected)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def by_hand(model, batch, targets):
    """The resized boxes, the features and the RPN proposals, as the model's forward makes them."""
    image_list, resized = model.transform(batch, [dict(t) for t in targets])
    features = model.backbone(image_list.tensors)
    proposals, _ = model.rpn(image_list, features)
    return image_list, resized, features, proposals


def test_ground_truth_boxes_get_the_box_heads_class_probabilities(diagnosed):
    model, batch, targets, _, _, diagnostics = diagnosed
    heads = model.roi_heads
    with torch.no_grad():
        image_list, resized, features, _ = by_hand(model, batch, targets)
        boxes = [t["boxes"] for t in resized]
        logits, _ = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, boxes, image_list.image_sizes)))
    expected = F.softmax(logits, -1).split([len(b) for b in boxes])
    for target, probs, diagnosis in zip(targets, expected, diagnostics):
        assert torch.equal(diagnosis["gt_labels"], target["labels"])
        assert diagnosis["gt_class_probs"].shape == (len(target["labels"]), 4)
        torch.testing.assert_close(diagnosis["gt_class_probs"], probs)


def test_positives_are_the_proposals_and_boxes_at_iou_one_half(diagnosed):
    """Every proposal or ground-truth box at IoU >= 0.5 with a ground truth, with its class; the
    targets are MaskIoUs and the predictions the MaskIoU head's, in [0, 1] at the start."""
    model, batch, targets, _, _, diagnostics = diagnosed
    with torch.no_grad():
        _, resized, _, proposals = by_hand(model, batch, targets)
    for target, boxes, diagnosis in zip(resized, proposals, diagnostics):
        candidates = torch.cat([boxes, target["boxes"]])
        count = len(target["boxes"])
        overlap = box_iou(target["boxes"], candidates) if count else torch.zeros(0, len(candidates))
        positive = overlap.max(0).values >= 0.5 if count else torch.zeros(len(candidates), dtype=torch.bool)
        assert len(diagnosis["positive_labels"]) == int(positive.sum()) >= count
        expected_labels = target["labels"][overlap.argmax(0)[positive]] if count else torch.zeros(0, dtype=torch.int64)
        assert torch.equal(diagnosis["positive_labels"], expected_labels)
        for key in ("positive_maskiou", "positive_maskiou_target"):
            assert diagnosis[key].shape == (int(positive.sum()),)
        assert torch.all((diagnosis["positive_maskiou_target"] >= 0) & (diagnosis["positive_maskiou_target"] <= 1))


def test_an_image_without_objects_has_empty_diagnostics(diagnosed):
    *_, diagnostics = diagnosed
    empty = diagnostics[1]
    assert empty["gt_class_probs"].shape == (0, 4) and len(empty["positive_labels"]) == 0


def test_diagnose_needs_evaluation_mode():
    model = small_model().train()
    batch = images()
    with pytest.raises(RuntimeError, match="model.eval"):
        model.diagnose(batch, make_targets(batch))


def test_maskiou_targets_of_the_ground_truth_boxes_by_hand(diagnosed):
    """A ground-truth box's MaskIoU target is the IoU, at 28x28 in the box, of its class's
    predicted mask (logit > 0) with its own mask (the whole instance lies in its box)."""
    model, batch, targets, _, _, diagnostics = diagnosed
    heads = model.roi_heads
    with torch.no_grad():
        image_list, resized, features, _ = by_hand(model, batch, targets)
        target, diagnosis = resized[0], diagnostics[0]
        boxes, labels = target["boxes"], target["labels"]
        mask_features = heads.mask_roi_pool(features, [boxes], image_list.image_sizes[:1])
        _, logits = heads.predict_mask_logits(mask_features, labels, False)
        rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype)[:, None], boxes], dim=1)  # box i on mask i
        truth = roi_align(target["masks"][:, None].float(), rois, (28, 28), 1.0, sampling_ratio=2)[:, 0] >= 0.5
    predicted = logits > 0
    overlap = (predicted & truth).flatten(1).sum(1).float()
    union = (predicted | truth).flatten(1).sum(1).float().clamp(min=1)
    got = diagnosis["positive_maskiou_target"][-len(boxes) :]  # the ground-truth boxes come last
    assert torch.equal(diagnosis["positive_labels"][-len(boxes) :], labels)
    torch.testing.assert_close(got, overlap / union, atol=0.05, rtol=0)
