"""The drop-ins as a torchvision user meets them: the cases of torchvision's own operator tests
(TestRoIAlign, TestMultiScaleRoIAlign, TestNMS) that a plain numerical comparison misses.

Empty and None inputs, the exception types a caller of torchvision catches, quantized
tensors, torch.jit.script (functions, modules, a module that calls them, a torchvision
MaskRCNN whose poolers are ours), torch.fx.symbolic_trace and torchvision's feature
extraction. Where a case states what torchvision does, the test runs torchvision too.
"""

import io

import pytest
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from msrcnn_fast import ops

# ---------------------------------------------------------------------------------------------
# Empty and None inputs


def test_batched_nms_of_no_boxes_is_empty_whatever_the_other_arguments():
    """torchvision's test_batched_nms_implementations: batched_nms(empty int64, None, None, None)."""
    empty = torch.empty((0,), dtype=torch.int64)
    for boxes in (empty, torch.empty((0, 4)), torch.empty((0, 4), dtype=torch.int64)):
        expected = torchvision.ops.batched_nms(boxes, None, None, None)
        kept = ops.batched_nms(boxes, None, None, None)
        assert kept.dtype == torch.int64 and kept.shape == (0,)
        torch.testing.assert_close(kept, expected)
    kept = ops.batched_nms(torch.empty((0, 4)), torch.empty(0), torch.empty(0, dtype=torch.int64), 0.5)
    assert kept.dtype == torch.int64 and kept.shape == (0,)


def test_nms_of_no_boxes_is_empty():
    kept = ops.nms(torch.empty((0, 4)), torch.empty(0), 0.5)
    assert kept.dtype == torch.int64 and kept.shape == (0,)


@pytest.mark.parametrize("boxes", [[], [torch.empty((0, 4))], [torch.empty((0, 4)), torch.empty((0, 4))]])
def test_roi_align_of_no_boxes_is_empty(boxes):
    x = torch.rand(2, 3, 8, 8)
    assert ops.roi_align(x, boxes, (2, 3)).shape == (0, 3, 2, 3)
    assert ops.RoIAlign(2, 1.0, 2)(x, boxes).shape == (0, 3, 2, 2)
    assert ops.roi_align(x, torch.empty((0, 5)), 2).shape == (0, 3, 2, 2)
    pooled = ops.MultiScaleRoIAlign(["a"], 2, 2)({"a": x}, [torch.empty((0, 4))] * 2, [(16, 16)] * 2)
    assert pooled.shape == (0, 3, 2, 2)


# ---------------------------------------------------------------------------------------------
# Errors: ours (ValueError / TypeError, naming the argument) and torchvision's type, both

X = torch.rand(1, 2, 8, 8)

# (name, call(ops module), our type, the argument our message names)
ERROR_CASES = [
    ("nms boxes of shape [4]", lambda o: o.nms(torch.rand(4), torch.rand(3), 0.5), ValueError, "boxes"),
    ("nms boxes of shape [3, 5]", lambda o: o.nms(torch.rand(3, 5), torch.rand(3), 0.5), ValueError, "boxes"),
    ("nms scores of shape [3, 2]", lambda o: o.nms(torch.rand(3, 4), torch.rand(3, 2), 0.5), ValueError, "scores"),
    ("nms 3 boxes, 4 scores", lambda o: o.nms(torch.rand(3, 4), torch.rand(4), 0.5), ValueError, "score"),
    (
        "nms int64 boxes",
        lambda o: o.nms(torch.ones(3, 4, dtype=torch.int64), torch.rand(3), 0.5),
        TypeError,
        "boxes",
    ),
    (
        "batched_nms 3 boxes, 2 idxs",
        lambda o: o.batched_nms(torch.rand(3, 4), torch.rand(3), torch.zeros(2, dtype=torch.int64), 0.5),
        ValueError,
        "category index",
    ),
    ("roi_align boxes Tensor[K, 4]", lambda o: o.roi_align(X, torch.rand(2, 4), 2), ValueError, "boxes"),
    ("roi_align boxes [Tensor[L, 3]]", lambda o: o.roi_align(X, [torch.rand(2, 3)], 2), ValueError, "boxes[0]"),
    ("roi_align boxes an int", lambda o: o.roi_align(X, 5, 2), TypeError, "boxes"),
    ("roi_align input [C, H, W]", lambda o: o.roi_align(X[0], torch.zeros(1, 5), 2), ValueError, "input"),
    ("roi_align int64 input", lambda o: o.roi_align(X.long(), torch.zeros(1, 5), 2), TypeError, "input"),
    ("RoIAlign boxes Tensor[K, 4]", lambda o: o.RoIAlign(2, 1.0, 2)(X, torch.rand(2, 4)), ValueError, "boxes"),
]


def _raised(call):
    with pytest.raises(Exception) as info:  # noqa: PT011 - the test is about which type
        call()
    return info.value


@pytest.mark.parametrize(("name", "call", "ours", "argument"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_are_ours_and_torchvisions_type(name, call, ours, argument):
    """Code written around torchvision's call (``except RuntimeError``, ``pytest.raises(
    AssertionError)``) catches ours; code written around ours still catches ValueError /
    TypeError; the message is ours and names the argument."""
    theirs = type(_raised(lambda: call(torchvision.ops)))
    error = _raised(lambda: call(ops))
    assert isinstance(error, ours), (name, type(error).__mro__)
    assert isinstance(error, theirs), (name, theirs, type(error).__mro__)
    assert argument in str(error), (name, str(error))


def test_error_classes_are_both_types():
    assert issubclass(ops.ArgumentValueError, ValueError) and issubclass(ops.ArgumentValueError, RuntimeError)
    assert issubclass(ops.ArgumentTypeError, TypeError) and issubclass(ops.ArgumentTypeError, RuntimeError)
    assert issubclass(ops.BoxesValueError, ValueError) and issubclass(ops.BoxesValueError, AssertionError)
    assert issubclass(ops.BoxesTypeError, TypeError) and issubclass(ops.BoxesTypeError, AssertionError)


# ---------------------------------------------------------------------------------------------
# Quantized tensors


def _quantize(t: Tensor, scale: float, zero_point: int, dtype: torch.dtype) -> Tensor:
    return torch.quantize_per_tensor(t, scale=scale, zero_point=zero_point, dtype=dtype)


def _rois(num_rois: int, img_size: int, num_imgs: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    rois = torch.randint(0, img_size // 2, size=(num_rois, 5), generator=g).float()
    rois[:, 0] = torch.randint(0, num_imgs, size=(num_rois,), generator=g).float()
    rois[:, 3:] += rois[:, 1:3]
    return rois


@pytest.mark.filterwarnings("ignore:.*quantize_per_tensor.*:UserWarning")
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize(("scale", "zero_point"), [(1.0, 0), (2.0, 10), (0.1, 50)])
@pytest.mark.parametrize("qdtype", [torch.qint8, torch.quint8, torch.qint32])
def test_quantized_roi_align_is_the_float_op_quantized(aligned, scale, zero_point, qdtype):
    """The output is quantized like the input (scale, zero point, dtype) and equals the float op
    on the dequantized arguments, quantized; torchvision's quantized kernel differs from that
    by one step on < 5 % of the outputs (its own test's bound), so ours is within it of theirs."""
    g = torch.Generator().manual_seed(0)
    qx = _quantize(torch.randint(50, 100, (1, 2, 10, 10), generator=g).float(), scale, zero_point, qdtype)
    qrois = _quantize(_rois(300, 10, 1, seed=1), scale, zero_point, qdtype)
    qy = ops.roi_align(qx, qrois, 5, 1.0, -1, aligned)
    assert qy.dtype == qdtype and qy.q_scale() == scale and qy.q_zero_point() == zero_point
    expected = ops.roi_align(qx.dequantize(), qrois.dequantize(), 5, 1.0, -1, aligned)
    assert torch.equal(qy.int_repr(), _quantize(expected, scale, zero_point, qdtype).int_repr())
    theirs = torchvision.ops.roi_align(qx, qrois, 5, 1.0, -1, aligned)
    differ = qy.int_repr() != theirs.int_repr()
    assert differ.float().mean() < 0.05
    steps = (qy.int_repr()[differ].long() - theirs.int_repr()[differ].long()).abs()
    assert steps.numel() == 0 or steps.max() <= 1


@pytest.mark.filterwarnings("ignore:.*quantize_per_tensor.*:UserWarning")
def test_quantized_roi_align_takes_one_image_per_batch_as_torchvision():
    qx = _quantize(torch.rand(2, 3, 10, 10) * 50, 1.0, 0, torch.qint8)
    qrois = _quantize(_rois(10, 10, 2, seed=0), 1.0, 0, torch.qint8)
    for impl in (torchvision.ops, ops):
        with pytest.raises(RuntimeError, match="Only one image per batch is allowed"):
            impl.roi_align(qx, qrois, output_size=5)
    with pytest.raises(ValueError, match="input"):
        ops.roi_align(qx, qrois, output_size=5)


@pytest.mark.filterwarnings("ignore:.*quantize_per_tensor.*:UserWarning")
@pytest.mark.parametrize(("scale", "zero_point"), [(1.0, 0), (2.0, 50), (3.0, 10)])
def test_quantized_nms_is_the_float_op_on_the_dequantized_values(scale, zero_point):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 60 + 1], dim=1)
    scores = torch.rand(200, generator=g) * 100
    idxs = torch.randint(0, 3, (200,), generator=g)
    qboxes = _quantize(boxes, scale, zero_point, torch.quint8)
    qscores = _quantize(scores, scale, zero_point, torch.quint8)
    float_boxes, float_scores = qboxes.dequantize(), qscores.dequantize()
    assert ops.nms(qboxes, qscores, 0.2).numel() < 150  # boxes are suppressed: the comparisons mean something
    for iou in (0.2, 0.5, 0.8):
        assert torch.equal(ops.nms(qboxes, qscores, iou), ops.nms(float_boxes, float_scores, iou))
        assert torch.equal(
            ops.batched_nms(qboxes, qscores, idxs, iou), ops.batched_nms(float_boxes, float_scores, idxs, iou)
        )


# ---------------------------------------------------------------------------------------------
# TorchScript


def _roi_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 10, 10, generator=g)
    roi = torch.tensor([[0, 0, 9, 9], [0, 5, 4, 9], [5, 5, 9, 9], [0, 0, 9, 9.0]])
    return x, [roi, roi * 0.5], torch.cat([torch.tensor([[0.0]] * 4 + [[1.0]] * 4), torch.cat([roi, roi * 0.5])], 1)


class _PoolWrapper(nn.Module):
    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, images: Tensor, boxes: list[Tensor]) -> Tensor:
        return self.pool(images, boxes)


class _Detector(nn.Module):
    """A module that calls the drop-in functions and modules, as a scripted detector would."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = ops.RoIAlign((3, 3), 0.5, 2)
        self.multi = ops.MultiScaleRoIAlign(["fine", "coarse"], 2, 2)

    def forward(self, images: Tensor, boxes: list[Tensor], scores: Tensor, labels: Tensor):
        fine = self.conv(images)
        coarse = nn.functional.max_pool2d(fine, 2)
        features = {"fine": fine, "coarse": coarse}
        sizes = [(images.shape[-2], images.shape[-1])] * images.shape[0]
        pooled = self.pool(fine, boxes) + ops.roi_align(fine, boxes, [3, 3], 0.5, 2).relu()
        multi = self.multi(features, boxes, sizes)
        all_boxes = torch.cat(boxes)
        return pooled, multi, ops.nms(all_boxes, scores, 0.5), ops.batched_nms(all_boxes, scores, labels, 0.5)


def test_scripted_functions_match_eager():
    x, box_list, rois = _roi_inputs()
    scripted = torch.jit.script(ops.roi_align)
    torch.testing.assert_close(scripted(x, rois, 3), ops.roi_align(x, rois, 3), rtol=0, atol=0)
    torch.testing.assert_close(
        scripted(x, box_list, [2, 3], 0.5, 2, True), ops.roi_align(x, box_list, (2, 3), 0.5, 2, True)
    )
    boxes, scores, labels = rois[:, 1:], torch.rand(8), torch.tensor([0, 1] * 4)
    assert torch.equal(torch.jit.script(ops.nms)(boxes, scores, 0.5), ops.nms(boxes, scores, 0.5))
    assert torch.equal(
        torch.jit.script(ops.batched_nms)(boxes, scores, labels, 0.5), ops.batched_nms(boxes, scores, labels, 0.5)
    )
    assert torch.jit.script(ops.batched_nms)(torch.empty((0, 4)), torch.empty(0), labels[:0], 0.5).shape == (0,)


def test_scripted_errors_name_the_argument():
    x, _, _ = _roi_inputs()
    with pytest.raises(torch.jit.Error, match=r"boxes: expected a Tensor\[K, 5\]"):
        torch.jit.script(ops.roi_align)(x, torch.rand(2, 4), 3)
    with pytest.raises(torch.jit.Error, match=r"boxes\[1\]: expected a Tensor\[L, 4\], got \(2, 3\)"):
        torch.jit.script(ops.roi_align)(x, [torch.rand(1, 4), torch.rand(2, 3)], 3)


def test_scripted_modules_match_eager_and_survive_save_and_load():
    x, box_list, _ = _roi_inputs()
    wrapper = _PoolWrapper(ops.RoIAlign(output_size=[3, 3], spatial_scale=1.0, sampling_ratio=-1))
    assert torch.jit.script(wrapper)(x, box_list).shape == (8, 3, 3, 3)  # torchvision's test_jit_boxes_list

    model = _Detector().eval()
    scores, labels = torch.rand(8), torch.tensor([0, 1] * 4)
    scripted = torch.jit.script(_Detector().eval())
    scripted.load_state_dict(model.state_dict())
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    expected = model(x, box_list, scores, labels)
    for module in (scripted, loaded):
        for got, want in zip(module(x, box_list, scores, labels), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert scripted.multi.scales == model.multi.scales == [1.0, 0.5]


def _tiny_mask_rcnn(pooler: type) -> MaskRCNN:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 8
    return MaskRCNN(
        backbone,
        num_classes=3,
        min_size=64,
        max_size=96,
        box_score_thresh=0.0,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=pooler(["0"], 7, 2),
        mask_roi_pool=pooler(["0"], 14, 2),
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=20,
    ).eval()


def test_scripted_torchvision_mask_rcnn_with_our_poolers_matches_eager():
    """A torchvision MaskRCNN built with our MultiScaleRoIAlign scripts, as torchvision's own."""
    model = _tiny_mask_rcnn(ops.MultiScaleRoIAlign)
    images = [torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        expected = model(images)
        _, detections = torch.jit.script(model)(images)
        reference = _tiny_mask_rcnn(torchvision.ops.MultiScaleRoIAlign)(images)
    assert expected[0]["boxes"].shape[0] > 0
    for key in ("boxes", "labels", "scores", "masks"):
        torch.testing.assert_close(detections[0][key], expected[0][key])
        torch.testing.assert_close(expected[0][key], reference[0][key], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# torch.fx


class _Pooling(nn.Module):
    def __init__(self, impl=ops):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = impl.RoIAlign((5, 5), 1.0, -1)
        self.multi = impl.MultiScaleRoIAlign(["fine", "coarse"], 3, 2)
        self.head = nn.Linear(4 * 25 + 4 * 9, 2)

    def forward(self, images: Tensor, boxes: list[Tensor]) -> Tensor:
        fine = self.conv(images)
        features = {"fine": fine, "coarse": nn.functional.avg_pool2d(fine, 2)}
        sizes = [(images.shape[-2], images.shape[-1])] * 2
        pooled = torch.cat([self.pool(fine, boxes).flatten(1), self.multi(features, boxes, sizes).flatten(1)], 1)
        return self.head(pooled)


def test_fx_traces_the_modules_with_the_ops_as_leaves():
    x, box_list, rois = _roi_inputs()
    module = ops.RoIAlign((5, 5), 1, -1)
    graph = torch.fx.symbolic_trace(module)
    targets = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    assert targets == [ops.roi_align]
    torch.testing.assert_close(graph(x, rois), module(x, rois), rtol=0, atol=0)

    pooler = ops.MultiScaleRoIAlign(["fine"], 3, 2)
    traced = torch.fx.symbolic_trace(pooler)
    assert pooler.scales is None  # tracing kept no Proxy in place of the scales
    torch.testing.assert_close(
        traced({"fine": x}, box_list, [(20, 20)] * 2), pooler({"fine": x}, box_list, [(20, 20)] * 2)
    )
    assert pooler.scales == [0.5]


def test_feature_extraction_of_a_model_using_the_drop_ins():
    """torchvision's feature extraction keeps our modules graph leaves, as its own ops' (they are
    subclasses): the same node names as the model with torchvision's modules."""
    x, box_list, _ = _roi_inputs()
    model = _Pooling().eval()
    assert get_graph_node_names(model) == get_graph_node_names(_Pooling(torchvision.ops))
    assert "pool" in get_graph_node_names(model)[1] and "multi" in get_graph_node_names(model)[1]
    extractor = create_feature_extractor(model, {"pool": "pooled", "multi": "multi", "head": "out"})
    features = extractor(x, box_list)
    torch.testing.assert_close(features["out"], model(x, box_list))
    torch.testing.assert_close(features["pooled"], model.pool(model.conv(x), box_list))
    assert features["multi"].shape == (8, 4, 3, 3)
