"""The mask head's one-class predictor: the same logits and gradients as all classes' logits
indexed by the labels, in both memory formats, and with no RoIs."""

from types import SimpleNamespace

import pytest
import torch

from msrcnn_fast.model.mask_head import MaskHead, class_mask_logits, upsampled_class_logits
from tests.model.conftest import all_classes_then_select


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("rois", [0, 1, 5])
def test_one_class_logits_and_gradients_equal_all_classes_selected(memory_format, rois):
    torch.manual_seed(0)
    predictor = torch.nn.Conv2d(12, 7, 1).double()
    torch.nn.init.normal_(predictor.bias)
    features = torch.randn(rois, 12, 6, 6, dtype=torch.double).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 7, (rois,))
    grad = torch.randn(rois, 1, 6, 6, dtype=torch.double)
    results = []
    for fn in (all_classes_then_select, class_mask_logits):
        x = features.clone().requires_grad_()
        logits = fn(predictor, x, labels)
        results.append((logits, *torch.autograd.grad(logits, (x, predictor.weight, predictor.bias), grad)))
    for expected, actual in zip(*results):
        torch.testing.assert_close(actual, expected)
    assert results[1][1].is_contiguous(memory_format=memory_format)  # the features' gradient keeps their layout


def test_one_class_logits_gradcheck():
    torch.manual_seed(0)
    labels = torch.tensor([2, 0, 2])
    inputs = (
        torch.randn(3, 5, 4, 4, dtype=torch.double, requires_grad=True),
        torch.randn(3, 5, 1, 1, dtype=torch.double, requires_grad=True),  # a 1x1 conv's weight, 3 classes
        torch.randn(3, dtype=torch.double, requires_grad=True),
    )

    def logits(features, weight, bias):
        return class_mask_logits(SimpleNamespace(weight=weight, bias=bias), features, labels)

    assert torch.autograd.gradcheck(logits, inputs)


def test_predict_classes_is_the_heads_logits_of_each_rois_class():
    torch.manual_seed(0)
    head = MaskHead(num_classes=5, in_channels=8, conv_dim=8, num_convs=1)
    x = torch.randn(3, 8, 7, 7)
    labels = torch.tensor([4, 0, 1])
    torch.testing.assert_close(
        head.predict_classes(head.features(x), labels), head(x)[torch.arange(3), labels][:, None]
    )


@pytest.mark.parametrize("features_dtype", [torch.float32, torch.bfloat16])
def test_one_class_logits_under_autocast_match_all_classes_selected(features_dtype):
    """Mixed precision (bfloat16 autocast on the CPU, as float16 on CUDA): same dtype and values
    as the all-classes predictor, gradients in the parameters' dtype."""
    torch.manual_seed(0)
    predictor = torch.nn.Conv2d(8, 5, 1)
    features = torch.randn(3, 8, 6, 6, dtype=features_dtype)
    labels = torch.tensor([1, 4, 0])
    results = []
    for fn in (all_classes_then_select, class_mask_logits):
        x = features.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = fn(predictor, x, labels)
        results.append((logits, *torch.autograd.grad(logits.float().sum(), (x, predictor.weight, predictor.bias))))
    (expected, *expected_grads), (actual, *grads) = results
    assert actual.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(actual, expected, atol=0.05, rtol=0.02)
    for grad, expected_grad, param in zip(grads, expected_grads, (features, predictor.weight, predictor.bias)):
        assert grad.dtype == param.dtype
        torch.testing.assert_close(grad, expected_grad, atol=0.05, rtol=0.02)


def test_class_logits_fuse_the_upsampling_at_inference_only(monkeypatch):
    """Without autograd, class_logits runs msrcnn_fast.ops.mask_class_logits, with the same
    logits as the layers; with autograd, the same logits, from autograd-tracked ops."""
    from msrcnn_fast.model import mask_head as module

    torch.manual_seed(0)
    head = MaskHead(num_classes=5, in_channels=8, conv_dim=16, num_convs=1)
    for p in (head.deconv.bias, head.predictor.bias):
        torch.nn.init.normal_(p)
    x = torch.randn(3, 8, 7, 7)
    labels = torch.tensor([4, 0, 4])
    calls = []
    fused = module.mask_class_logits
    monkeypatch.setattr(module, "mask_class_logits", lambda *a: calls.append(1) or fused(*a))
    expected = head.predict_classes(head.features(x), labels)
    with torch.no_grad():
        got = head.class_logits(x, labels)
    assert calls == [1]
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-5)
    trained = head.class_logits(x, labels)
    assert calls == [1] and trained.requires_grad
    torch.testing.assert_close(trained, expected)
    with torch.no_grad():
        assert head.class_logits(x[:0], labels[:0]).shape == (0, 1, 14, 14)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_upsampled_class_logits_in_training_match_the_layers_and_their_gradients(bias, channels_last):
    """With autograd, upsampled_class_logits computes the 2x2 stride-2 deconv as one GEMM in
    pixel order: the logits and the gradients of x and of every parameter are the layers'."""
    torch.manual_seed(0)
    deconv, predictor = torch.nn.ConvTranspose2d(8, 16, 2, stride=2, bias=bias), torch.nn.Conv2d(16, 5, 1)
    for p in (deconv.bias, predictor.bias):
        if p is not None:
            torch.nn.init.normal_(p)
    x = torch.randn(4, 8, 5, 6)
    x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    labels = torch.tensor([1, 4, 0, 4])
    inputs = [x, *deconv.parameters(), *predictor.parameters()]
    grad = torch.randn(4, 1, 10, 12)
    expected = class_mask_logits(predictor, torch.relu(deconv(x)), labels)
    got = upsampled_class_logits(deconv, predictor, x, labels)
    torch.testing.assert_close(got, expected)
    for g, e in zip(torch.autograd.grad(got, inputs, grad), torch.autograd.grad(expected, inputs, grad)):
        torch.testing.assert_close(g, e)
    empty = upsampled_class_logits(deconv, predictor, x[:0], labels[:0])
    assert empty.shape == (0, 1, 10, 12) and empty.requires_grad


def test_torchvision_mask_head_class_logits_match_its_layers():
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    from msrcnn_fast.integrations.torchvision import TorchvisionMaskHead

    torch.manual_seed(0)
    head = TorchvisionMaskHead(MaskRCNNHeads(8, [16], 1), MaskRCNNPredictor(16, 16, 5))
    for p in (head.upsample.conv5_mask.bias, head.predictor.bias):
        torch.nn.init.normal_(p)
    x = torch.randn(3, 8, 7, 7)
    labels = torch.tensor([1, 2, 4])
    with torch.no_grad():
        expected = head(x)[torch.arange(3), labels][:, None]
        torch.testing.assert_close(head.class_logits(x, labels), expected, rtol=1e-5, atol=1e-5)
