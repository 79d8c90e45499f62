"""Region proposal network: torchvision's RPN with its proposal filtering on our batched NMS."""

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops

from msrcnn_fast import ops

__all__ = ["ProposalNetwork", "build_rpn"]


class ProposalNetwork(RegionProposalNetwork):
    """torchvision's RegionProposalNetwork whose per-level NMS is msrcnn_fast.ops.batched_nms."""

    @classmethod
    def from_torchvision(cls, rpn: RegionProposalNetwork) -> "ProposalNetwork":
        """A ProposalNetwork on a torchvision RPN's anchor generator and head (the modules
        themselves, not copies) and with its settings."""
        new = cls(
            rpn.anchor_generator,
            rpn.head,
            rpn.proposal_matcher.high_threshold,
            rpn.proposal_matcher.low_threshold,
            rpn.fg_bg_sampler.batch_size_per_image,
            rpn.fg_bg_sampler.positive_fraction,
            dict(rpn._pre_nms_top_n),
            dict(rpn._post_nms_top_n),
            rpn.nms_thresh,
            score_thresh=rpn.score_thresh,
        )
        new.proposal_matcher, new.box_coder, new.min_size = rpn.proposal_matcher, rpn.box_coder, rpn.min_size
        return new.train(rpn.training)

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        num_images = proposals.shape[0]
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat(
            [
                torch.full((n,), i, dtype=torch.int64, device=proposals.device)
                for i, n in enumerate(num_anchors_per_level)
            ]
        ).expand_as(objectness)
        # The top-n anchors of each level, before NMS.
        top_n = self._get_top_n_idx(objectness, num_anchors_per_level)
        rows = torch.arange(num_images, device=proposals.device)[:, None]
        probabilities = objectness[rows, top_n].sigmoid()
        levels, proposals = levels[rows, top_n], proposals[rows, top_n]
        final_boxes, final_scores = [], []
        for boxes, scores, level, image_shape in zip(proposals, probabilities, levels, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            keep = keep[scores[keep] >= self.score_thresh]
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep = ops.batched_nms(boxes, scores, level, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores


def build_rpn(
    *,
    anchor_sizes: tuple[tuple[int, ...], ...],
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    in_channels: int = 256,
    pre_nms_top_n_train: int = 2000,
    pre_nms_top_n_test: int = 1000,
    post_nms_top_n_train: int = 2000,
    post_nms_top_n_test: int = 1000,
    nms_thresh: float = 0.7,
    fg_iou_thresh: float = 0.7,
    bg_iou_thresh: float = 0.3,
    batch_size_per_image: int = 256,
    positive_fraction: float = 0.5,
    score_thresh: float = 0.0,
) -> ProposalNetwork:
    """The RPN over feature levels with one tuple of anchor sizes each (torchvision's defaults)."""
    anchors = AnchorGenerator(anchor_sizes, (aspect_ratios,) * len(anchor_sizes))
    head = RPNHead(in_channels, anchors.num_anchors_per_location()[0])
    return ProposalNetwork(
        anchors,
        head,
        fg_iou_thresh,
        bg_iou_thresh,
        batch_size_per_image,
        positive_fraction,
        dict(training=pre_nms_top_n_train, testing=pre_nms_top_n_test),
        dict(training=post_nms_top_n_train, testing=post_nms_top_n_test),
        nms_thresh,
        score_thresh=score_thresh,
    )
