"""MediaPipe's BlazeFace short-range face detector, ported to torch (weights: weights/blazeface/).

The network follows `face_detection_short_range.tflite` op for op: a 5x5 stride-2 conv, 16
residual blocks (3x3 depthwise conv + 1x1 conv, added to the block's input, then ReLU), and SSD
heads on the 16x16 and 8x8 feature maps. TFLite's SAME padding puts the odd pixel of a stride-2
layer at the bottom/right; stride-2 blocks take their shortcut through a 2x2 max-pool, and blocks
that widen pad the shortcut with zero channels at the end. The heads give per anchor 16 numbers
(box centre x, y, width, height, then 6 keypoints x, y, in 128-pixel units relative to the anchor)
and one face logit. Anchors and decoding follow MediaPipe's face_detection_short_range graph
(SsdAnchorsCalculator, TensorsToDetectionsCalculator); overlapping detections are merged with its
weighted non-maximum suppression.
(rap_core.face_detection searches photos of any size with it; loading.builtin loads its weights.)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

INPUT_SIZE = 128
# (in_channels, out_channels, stride) of the residual blocks, as in the tflite graph.
BLOCKS = [
    (24, 24, 1),
    (24, 28, 1),
    (28, 32, 2),
    (32, 36, 1),
    (36, 42, 1),
    (42, 48, 2),
    (48, 56, 1),
    (56, 64, 1),
    (64, 72, 1),
    (72, 80, 1),
    (80, 88, 1),
    (88, 96, 2),
    (96, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
]
HEAD_BLOCK = 10  # the 16x16 head reads the output of block 10 (88 channels)
SCORE_CLIP = 100.0  # MediaPipe clips logits to +-100 before the sigmoid
MIN_SCORE = 0.5  # min_score_thresh of the short-range graph
NMS_IOU = 0.3  # min_suppression_threshold of the short-range graph


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TFLite SAME padding of x [B, C, H, W] for a square kernel: the odd pixel goes bottom/right."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad wants (left, right, top, bottom)
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Block(nn.Module):
    """depthwise 3x3 (stride 1 or 2) -> 1x1 conv, plus the (max-pooled, channel-padded) input; ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.in_channels = stride, in_channels
        # SAME padding: 1 on every side at stride 1; at stride 2 (even sizes) 0 before, 1 after, in forward.
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride, padding=2 - stride, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, Cin, H, W] -> [B, Cout, H / stride, W / stride]."""
        if self.stride == 2:
            y = self.pointwise(self.depthwise(same_pad(x, 3, 2)))
            x = F.max_pool2d(x, 2)
        else:
            y = self.pointwise(self.depthwise(x))
        y[:, : self.in_channels] += x  # the shortcut, zero-padded to Cout channels
        return F.relu_(y)


class BlazeFace(nn.Module):
    """Image [B, 3, 128, 128] in [-1, 1] -> (regressors [B, 896, 16], logits [B, 896])."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 5, 2)
        self.blocks = nn.ModuleList(Block(*spec) for spec in BLOCKS)
        self.classifier_8 = nn.Conv2d(88, 2, 1)
        self.regressor_8 = nn.Conv2d(88, 32, 1)
        self.classifier_16 = nn.Conv2d(96, 6, 1)
        self.regressor_16 = nn.Conv2d(96, 96, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)  # NHWC as in TFLite: on CPU, pools and convs run faster
        x = F.relu(self.stem(same_pad(x, 5, 2)))  # [B, 24, 64, 64]
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == HEAD_BLOCK:
                fine = x  # [B, 88, 16, 16]
        coarse = x  # [B, 96, 8, 8]
        logits = torch.cat(
            [
                rearrange(self.classifier_8(fine), "b a h w -> b (h w a)"),  # [B, 512]
                rearrange(self.classifier_16(coarse), "b a h w -> b (h w a)"),  # [B, 384]
            ],
            dim=1,
        )
        boxes = torch.cat(
            [
                rearrange(self.regressor_8(fine), "b (a k) h w -> b (h w a) k", k=16),  # [B, 512, 16]
                rearrange(self.regressor_16(coarse), "b (a k) h w -> b (h w a) k", k=16),  # [B, 384, 16]
            ],
            dim=1,
        )
        return boxes, logits


def anchors() -> torch.Tensor:
    """SSD anchor centres [896, 2] (x, y in 0..1) of the short-range graph: strides 8, 16, 16, 16
    (layers of equal stride share one grid), 2 anchors per layer, fixed size 1, offset 0.5.
    Order: feature map, then row, then column, then anchor, as the heads' outputs."""
    grids = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = INPUT_SIZE // stride
        centres = (torch.arange(cells, dtype=torch.float32) + 0.5) / cells
        y, x = torch.meshgrid(centres, centres, indexing="ij")  # [cells, cells] each
        grid = torch.stack([x, y], dim=-1)  # [cells, cells, 2]
        grids.append(rearrange(grid[:, :, None].expand(cells, cells, per_cell, 2), "h w a c -> (h w a) c"))
    return torch.cat(grids)  # [896, 2]


class Detection(NamedTuple):
    """A face: box [4] (x0, y0, x1, y1) and 6 keypoints [6, 2] (x, y) in MediaPipe's order (the two eyes,
    nose tip, mouth centre, the two ear tragions), in the units they were decoded in; and the score."""

    box: torch.Tensor
    keypoints: torch.Tensor
    score: float


def decode(boxes: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw outputs boxes [..., 896, 16], logits [..., 896] (one image, or a batch: leading dims ...) ->
    (boxes [..., 896, 4] as x0, y0, x1, y1 in 0..1, keypoints [..., 896, 6, 2] in 0..1, scores [..., 896])."""
    centres = anchors().to(boxes)  # [896, 2]
    raw = boxes / INPUT_SIZE
    centre, size = raw[..., 0:2] + centres, raw[..., 2:4]  # [..., 896, 2] each
    corners = torch.cat([centre - size / 2, centre + size / 2], dim=-1)  # [..., 896, 4]
    points = rearrange(raw[..., 4:], "... n (p c) -> ... n p c", c=2) + centres[:, None]  # [..., 896, 6, 2]
    scores = torch.sigmoid(logits.clamp(-SCORE_CLIP, SCORE_CLIP))
    return corners, points, scores


def box_iou(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU of box [4] (x0, y0, x1, y1) with others [N, 4] -> [N]."""
    low, high = torch.maximum(box[:2], others[:, :2]), torch.minimum(box[2:], others[:, 2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    areas = (others[:, 2:] - others[:, :2]).clamp(min=0).prod(dim=1)
    return inter / ((box[2:] - box[:2]).clamp(min=0).prod() + areas - inter).clamp(min=1e-12)


def weighted_nms(
    boxes: torch.Tensor, points: torch.Tensor, scores: torch.Tensor, min_score: float = MIN_SCORE, iou: float = NMS_IOU
) -> list[Detection]:
    """MediaPipe's weighted NMS: boxes [N, 4], points [N, 6, 2], scores [N] -> detections, best first.
    The best remaining candidate absorbs every candidate overlapping it by more than `iou`; the merged
    box and keypoints are the score-weighted mean of the absorbed ones, the score the best one's."""
    keep = scores >= min_score
    boxes, points, scores = boxes[keep], points[keep], scores[keep]
    order = scores.argsort(descending=True)
    boxes, points, scores = boxes[order], points[order], scores[order]
    found = []
    while scores.numel():
        absorbed = box_iou(boxes[0], boxes) > iou
        absorbed[0] = True
        weights = scores[absorbed] / scores[absorbed].sum()  # [M]
        found.append(
            Detection(
                box=(boxes[absorbed] * weights[:, None]).sum(0),
                keypoints=(points[absorbed] * weights[:, None, None]).sum(0),
                score=float(scores[0]),
            )
        )
        boxes, points, scores = boxes[~absorbed], points[~absorbed], scores[~absorbed]
    return found
