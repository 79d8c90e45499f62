"""Model factories, like torchvision's: ``mask_scoring_rcnn(backbone, ...)`` on any backbone, and
msrcnn_resnet{18,50,101}_fpn and msrcnn_resnet101_dcn_fpn on our ResNet-FPN backbones.

Weights load only from local files (nothing is downloaded): ``weights`` is a whole-model
state_dict (ours, or a torchvision Mask R-CNN's, which gets a new MaskIoU head),
``backbone_weights`` an ImageNet ResNet state_dict.
"""

from collections.abc import Sequence

import torch
from torch import nn

from msrcnn_fast.model.backbone import resnet_fpn_backbone
from msrcnn_fast.model.batchnorm_folding import fold_frozen_batchnorm
from msrcnn_fast.model.box_head import BoxHead, BoxPredictor
from msrcnn_fast.model.mask_head import MaskHead
from msrcnn_fast.model.maskiou import MASKIOU_INPUTS
from msrcnn_fast.model.maskiou_head import MaskIoUHead
from msrcnn_fast.model.rcnn import MaskScoringRCNN
from msrcnn_fast.model.roi_heads import MaskScoringRoIHeads
from msrcnn_fast.model.rpn import build_rpn
from msrcnn_fast.model.torchvision_weights import is_torchvision_state_dict, torchvision_to_msrcnn_state_dict
from msrcnn_fast.model.transform import DetectionTransform
from msrcnn_fast.ops import Conv3x3, MultiScaleRoIAlign

__all__ = [
    "mask_scoring_rcnn",
    "msrcnn_resnet18_fpn",
    "msrcnn_resnet50_fpn",
    "msrcnn_resnet101_dcn_fpn",
    "msrcnn_resnet101_fpn",
    "msrcnn_resnet_fpn",
]

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
# The paper's ResNet-18: P4, P5 and P6 only, so each level covers two sizes.
ANCHORS_P4_P6 = ((32, 64), (128, 256), (512, 1024))


def default_anchor_sizes(stages: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Anchor sizes per FPN level (the stages' P levels, then P6): 2^(s + 3) pixels at P_s, as
    torchvision; the paper's C4+C5 ResNet-18 gets two sizes per level to cover 32-1024."""
    if stages == (4, 5):
        return ANCHORS_P4_P6
    return tuple((2 ** (s + 3),) for s in stages) + ((2 ** (stages[-1] + 4),),)


def feature_map_names(backbone: nn.Module) -> list[str]:
    """The names of the maps ``backbone`` returns (one forward of a small blank image, in eval
    mode, without gradients)."""
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else "cpu"
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    training = backbone.training
    try:
        with torch.no_grad():
            maps = backbone.eval()(torch.zeros(1, 3, 64, 64, device=device, dtype=dtype))
    finally:
        backbone.train(training)
    if not isinstance(maps, dict) or not maps:
        raise ValueError(f"backbone: expected a module returning an ordered dict of maps, got {type(maps).__name__}")
    return list(maps)


def mask_scoring_rcnn(
    backbone: nn.Module,
    *,
    num_classes: int = 81,
    weights: str | None = None,
    min_size: int = 800,
    max_size: int = 1333,
    image_mean: tuple[float, float, float] = IMAGE_MEAN,
    image_std: tuple[float, float, float] = IMAGE_STD,
    anchor_sizes: tuple[tuple[int, ...], ...] | None = None,
    roi_feature_maps: Sequence[str] | None = None,
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,
    rpn_bg_iou_thresh: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    box_fc_dim: int = 1024,
    box_head_convs: int = 0,
    box_batch_size_per_image: int = 512,
    box_positive_fraction: float = 0.25,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    soft_nms: bool = False,
    soft_nms_sigma: float = 0.6,
    mask_conv_dim: int = 256,
    maskiou_conv_dim: int = 256,
    maskiou_fc_dim: int = 1024,
    mask_scoring: bool = True,
    maskiou_input: str = "a",
    maskiou_target: str = "target_class",
    maskiou_tau: float = 0.0,
    maskiou_loss_weight: float = 1.0,
    gt_maskiou_at_eval: bool = False,
    exact_aten_convs: bool = False,
    bf16_inference: bool = True,
    channels_last: bool = True,
) -> MaskScoringRCNN:
    """A Mask Scoring R-CNN on ``backbone``; every option keyword-only.

    ``backbone``: any torchvision-style backbone, as torchvision's ``MaskRCNN(backbone, ...)``
    takes: a module with an ``out_channels`` attribute whose forward returns an ordered dict of
    feature maps (e.g. torchvision's ``BackboneWithFPN``, ``mobilenet_backbone(fpn=True)``, our
    ``resnet_fpn_backbone``). The RPN reads every map (``anchor_sizes``: one tuple of sizes per
    map; default 32, 64, 128, ... pixels); the RoI heads read ``roi_feature_maps`` (default:
    every map but "pool", the RPN-only P6 of torchvision's FPNs).

    The defaults are the paper's (images 800/1333, RoIAlign 7x7 and 14x14 with sampling ratio 2,
    512 RoIs per image a quarter positive, hard NMS 0.5, top 100). ``num_classes`` counts the
    background. Head widths (``box_fc_dim``, ``mask_conv_dim``, ``maskiou_conv_dim``,
    ``maskiou_fc_dim``) can be narrowed for small CPU runs; ``box_head_convs`` puts that many
    3x3 conv + GroupNorm + ReLU layers before the box head's FCs (0: the paper's 2-FC head).
    ``channels_last`` runs the network on channels-last tensors (faster on CPUs and tensor
    cores; False: NCHW, as torchvision).
    The 3x3 convolutions (padding 1, stride 1 or 2; the backbone's, FPN's, RPN's and heads') run
    msrcnn::conv3x3 (Winograd on the CPU, Triton on CUDA); ``exact_aten_convs`` runs ATen's
    instead, with torchvision's exact numerics. Every FrozenBatchNorm2d that directly follows a
    convolution is folded into it. ``bf16_inference``: at inference on an AMD CPU with AVX-512
    BF16 (Zen 4 on; ``build_info()["bf16_dot"]``) the box head's two FCs, the mask head's
    upsampling + class logits (mask_class_logits), and the MaskIoU head's stride-2 convolution
    and first two FCs compute in bfloat16 with float32 accumulation, 2x faster there (README,
    "bfloat16 at inference"); False keeps float32, as everywhere else (training, GPUs, other
    CPUs, torch.compile and torch.export).
    MaskIoU options: see MaskScoringRoIHeads (Tables 4-7).
    """
    if not isinstance(getattr(backbone, "out_channels", None), int):
        raise ValueError(f"backbone: expected a module with an int out_channels, got {type(backbone).__name__}")
    if maskiou_input not in MASKIOU_INPUTS:
        raise ValueError(f"maskiou_input: expected one of {sorted(MASKIOU_INPUTS)}, got {maskiou_input!r}")
    maps = feature_map_names(backbone)
    if roi_feature_maps is None:
        roi_feature_maps = [name for name in maps if name != "pool"] or maps
    if anchor_sizes is None:
        anchor_sizes = tuple((32 * 2**i,) for i in range(len(maps)))
    channels = backbone.out_channels
    rpn = build_rpn(
        anchor_sizes=anchor_sizes,
        in_channels=channels,
        pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        post_nms_top_n_train=rpn_post_nms_top_n_train,
        post_nms_top_n_test=rpn_post_nms_top_n_test,
        nms_thresh=rpn_nms_thresh,
        fg_iou_thresh=rpn_fg_iou_thresh,
        bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image,
    )
    levels = list(roi_feature_maps)
    maskiou_variant = MASKIOU_INPUTS[maskiou_input]
    roi_heads = MaskScoringRoIHeads(
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
        box_head=BoxHead(
            in_channels=channels, roi_size=7, fc_dim=box_fc_dim, num_convs=box_head_convs, bf16_inference=bf16_inference
        ),
        box_predictor=BoxPredictor(in_channels=box_fc_dim, num_classes=num_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2),
        mask_head=MaskHead(
            num_classes=num_classes, in_channels=channels, conv_dim=mask_conv_dim, bf16_inference=bf16_inference
        ),
        maskiou_head=MaskIoUHead(
            num_classes=num_classes,
            in_channels=maskiou_variant.channels(channels, num_classes),
            conv_dim=maskiou_conv_dim,
            fc_dim=maskiou_fc_dim,
            roi_size=maskiou_variant.roi_size,
            bf16_inference=bf16_inference,
        ),
        maskiou_roi_pool=(
            MultiScaleRoIAlign(levels, maskiou_variant.roi_size, 2) if maskiou_variant.roi_size != 14 else None
        ),
        batch_size_per_image=box_batch_size_per_image,
        positive_fraction=box_positive_fraction,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_img=box_detections_per_img,
        soft_nms=soft_nms,
        soft_nms_sigma=soft_nms_sigma,
        mask_scoring=mask_scoring,
        maskiou_input=maskiou_input,
        maskiou_target=maskiou_target,
        maskiou_tau=maskiou_tau,
        maskiou_loss_weight=maskiou_loss_weight,
        gt_maskiou_at_eval=gt_maskiou_at_eval,
    )
    transform = DetectionTransform(min_size, max_size, list(image_mean), list(image_std), channels_last=channels_last)
    model = MaskScoringRCNN(backbone=backbone, rpn=rpn, roi_heads=roi_heads, transform=transform)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    Conv3x3.convert(model, exact_aten=exact_aten_convs)
    fold_frozen_batchnorm(model.backbone)
    _contiguous_3x3_filters(model)
    if weights is not None:
        load_weights(model, weights)
    return model


def msrcnn_resnet_fpn(
    *,
    depth: int,
    returned_stages: tuple[int, ...] = (2, 3, 4, 5),
    deformable_stages: tuple[int, ...] = (),
    norm: str = "frozen_bn",
    fpn_norm: str = "auto",
    trainable_backbone_layers: int = 3,
    fpn_channels: int = 256,
    backbone_weights: str | None = None,
    zero_init_residual: bool = False,
    anchor_sizes: tuple[tuple[int, ...], ...] | None = None,
    **options,
) -> MaskScoringRCNN:
    """A Mask Scoring R-CNN on a ResNet-``depth`` FPN backbone (resnet_fpn_backbone).

    ``norm`` ("frozen_bn", "bn", "gn") and ``trainable_backbone_layers`` (0-5) set how the
    backbone trains; ``fpn_norm`` ("auto", "none", "bn", "gn") normalises the FPN's
    convolutions ("auto": GroupNorm with norm "gn", the from-scratch setting in which an
    unnormalised FPN's scale runs away; none otherwise, as the paper's and torchvision's FPN).
    ``zero_init_residual``: each residual block starts as the identity (resnet_fpn_backbone).
    ``anchor_sizes`` default: 2^(s + 3) pixels at P_s (default_anchor_sizes). ``options``: the
    keyword arguments of mask_scoring_rcnn.
    """
    backbone = resnet_fpn_backbone(
        depth=depth,
        norm=norm,
        fpn_norm=fpn_norm,
        trainable_layers=trainable_backbone_layers,
        returned_stages=returned_stages,
        deformable_stages=deformable_stages,
        out_channels=fpn_channels,
        weights_path=backbone_weights,
        zero_init_residual=zero_init_residual,
    )
    if anchor_sizes is None:
        anchor_sizes = default_anchor_sizes(tuple(returned_stages))
    return mask_scoring_rcnn(backbone, anchor_sizes=anchor_sizes, **options)


def _contiguous_3x3_filters(model: nn.Module) -> None:
    """The Winograd kernels read each 3x3 filter as 9 consecutive floats, so a channels-last
    weight would be copied on every call: Conv3x3 weights stay contiguous (ATen's convs take either)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Conv3x3):
                module.weight.data = module.weight.data.contiguous()


def load_weights(model: MaskScoringRCNN, path: str) -> None:
    """Loads a local state_dict: ours (a checkpoint's "model" entry too) or torchvision's."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if is_torchvision_state_dict(state):
        state = torchvision_to_msrcnn_state_dict(state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("roi_heads.maskiou_head.")]
        if missing or unexpected:
            raise ValueError(f"{path}: does not fit this model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    else:
        model.load_state_dict(state)


def msrcnn_resnet18_fpn(*, num_classes: int = 81, weights=None, backbone_weights=None, **kwargs) -> MaskScoringRCNN:
    """ResNet-18 FPN as in the paper: only C4 and C5 feed the FPN (P4, P5, P6), images 600/1000."""
    options = dict(min_size=600, max_size=1000, returned_stages=(4, 5)) | kwargs
    return msrcnn_resnet_fpn(
        depth=18, num_classes=num_classes, weights=weights, backbone_weights=backbone_weights, **options
    )


def msrcnn_resnet50_fpn(*, num_classes: int = 81, weights=None, backbone_weights=None, **kwargs) -> MaskScoringRCNN:
    """ResNet-50 FPN (C2-C5, P2-P6), images 800/1333."""
    return msrcnn_resnet_fpn(
        depth=50, num_classes=num_classes, weights=weights, backbone_weights=backbone_weights, **kwargs
    )


def msrcnn_resnet101_fpn(*, num_classes: int = 81, weights=None, backbone_weights=None, **kwargs) -> MaskScoringRCNN:
    """ResNet-101 FPN (C2-C5, P2-P6), images 800/1333."""
    return msrcnn_resnet_fpn(
        depth=101, num_classes=num_classes, weights=weights, backbone_weights=backbone_weights, **kwargs
    )


def msrcnn_resnet101_dcn_fpn(
    *, num_classes: int = 81, weights=None, backbone_weights=None, **kwargs
) -> MaskScoringRCNN:
    """ResNet-101 DCN+FPN: deformable 3x3 convolutions in stages C3-C5, images 800/1333."""
    options = dict(deformable_stages=(3, 4, 5)) | kwargs
    return msrcnn_resnet_fpn(
        depth=101, num_classes=num_classes, weights=weights, backbone_weights=backbone_weights, **options
    )
