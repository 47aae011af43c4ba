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

`detect_faces` finds faces in a photo of any size. The short-range model is trained on faces that
fill much of its input (selfie distance), so a small face in a big photo is looked for in smaller
windows, and every candidate is confirmed by a second look at its best scale (see its docstring).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file
from torch import nn

from ..errors import MissingWeightsError

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "blazeface" / "blazeface.safetensors"
INPUT_SIZE = 128
# (in_channels, out_channels, stride) of the residual blocks, as in the tflite graph.
BLOCKS = [(24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2), (48, 56, 1), (56, 64, 1),
          (64, 72, 1), (72, 80, 1), (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1), (96, 96, 1), (96, 96, 1)]
HEAD_BLOCK = 10  # the 16x16 head reads the output of block 10 (88 channels)
SCORE_CLIP = 100.0  # MediaPipe clips logits to +-100 before the sigmoid
MIN_SCORE = 0.5  # min_score_thresh of the short-range graph
NMS_IOU = 0.3  # min_suppression_threshold of the short-range graph
WINDOW_DIVISOR = 2  # the finest search windows are the short side / 2
LOOK_SCALE = 3.0  # second-look square: the candidate's box side times this
SURE_SCORE = 0.75  # a face is kept if its second look scores this much
EDGE_MARGIN = 0.01  # a box this close to a square's inner edge (square units) counts as cut


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
        logits = torch.cat([
            rearrange(self.classifier_8(fine), "b a h w -> b (h w a)"),  # [B, 512]
            rearrange(self.classifier_16(coarse), "b a h w -> b (h w a)"),  # [B, 384]
        ], dim=1)
        boxes = torch.cat([
            rearrange(self.regressor_8(fine), "b (a k) h w -> b (h w a) k", k=16),  # [B, 512, 16]
            rearrange(self.regressor_16(coarse), "b (a k) h w -> b (h w a) k", k=16),  # [B, 384, 16]
        ], dim=1)
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
    """One image's raw outputs boxes [896, 16], logits [896] -> (boxes [896, 4] as x0, y0, x1, y1 in
    0..1, keypoints [896, 6, 2] in 0..1, scores [896])."""
    centres = anchors().to(boxes)  # [896, 2]
    raw = boxes / INPUT_SIZE
    centre, size = raw[:, 0:2] + centres, raw[:, 2:4]  # [896, 2] each
    corners = torch.cat([centre - size / 2, centre + size / 2], dim=1)  # [896, 4]
    points = rearrange(raw[:, 4:], "n (p c) -> n p c", c=2) + centres[:, None]  # [896, 6, 2]
    scores = torch.sigmoid(logits.clamp(-SCORE_CLIP, SCORE_CLIP))
    return corners, points, scores


def box_iou(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU of box [4] (x0, y0, x1, y1) with others [N, 4] -> [N]."""
    low, high = torch.maximum(box[:2], others[:, :2]), torch.minimum(box[2:], others[:, 2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    areas = (others[:, 2:] - others[:, :2]).clamp(min=0).prod(dim=1)
    return inter / ((box[2:] - box[:2]).clamp(min=0).prod() + areas - inter).clamp(min=1e-12)


def weighted_nms(boxes: torch.Tensor, points: torch.Tensor, scores: torch.Tensor,
                 min_score: float = MIN_SCORE, iou: float = NMS_IOU) -> list[Detection]:
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
        found.append(Detection(
            box=(boxes[absorbed] * weights[:, None]).sum(0),
            keypoints=(points[absorbed] * weights[:, None, None]).sum(0),
            score=float(scores[0]),
        ))
        boxes, points, scores = boxes[~absorbed], points[~absorbed], scores[~absorbed]
    return found


@lru_cache(maxsize=1)
def load_blazeface() -> BlazeFace:
    """The shipped detector, float32 on the CPU, in eval mode (loaded once per process)."""
    if not WEIGHTS.is_file():
        raise MissingWeightsError(
            WEIGHTS.name, str(WEIGHTS.parent), "",
            origin="it ships with ComfyUI-RAP: reinstall the package or restore rap_core/weights/blazeface",
        )
    model = BlazeFace()
    model.load_state_dict({key: value.float() for key, value in load_file(WEIGHTS).items()})
    return model.eval().requires_grad_(False).to(memory_format=torch.channels_last)


def _starts(length: int, side: int) -> list[int]:
    """Offsets of windows of `side` pixels covering `length` pixels, overlapping by half a window."""
    return sorted(set(range(0, length - side, side // 2)) | {length - side})


def search_levels(height: int, width: int) -> list[list[tuple[int, int, int]]]:
    """The squares (top, left, side) in pixels that detect_faces searches, coarse to fine: the whole
    photo (its long side, centred: letterboxed), then windows of the short side, then of half of it."""
    long, short = max(height, width), min(height, width)
    levels = [[((height - long) // 2, (width - long) // 2, long)]]
    for side in sorted({short, short // WINDOW_DIVISOR} - {long}, reverse=True):
        levels.append([(top, left, side) for top in _starts(height, side) for left in _starts(width, side)])
    return levels


def _square(image: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    """The square (top, left, side) of image [3, H, W] 0..1, black outside the photo -> [3, 128, 128] in [-1, 1]."""
    _, height, width = image.shape
    scale = INPUT_SIZE / side
    y0, y1, x0, x1 = max(top, 0), min(top + side, height), max(left, 0), min(left + side, width)
    size = (max(round((y1 - y0) * scale), 1), max(round((x1 - x0) * scale), 1))
    part = F.interpolate(image[None, :, y0:y1, x0:x1].float(), size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0]  # [3, h, w]
    out = image.new_zeros(3, INPUT_SIZE, INPUT_SIZE, dtype=torch.float32)
    if y1 <= y0 or x1 <= x0:  # wholly outside the photo
        return out - 1
    oy, ox = min(round((y0 - top) * scale), INPUT_SIZE - size[0]), min(round((x0 - left) * scale), INPUT_SIZE - size[1])
    out[:, oy : oy + size[0], ox : ox + size[1]] = part
    return out * 2 - 1


def _squares(image: torch.Tensor, squares: list[tuple[int, int, int]]) -> torch.Tensor:
    """The squares (top, left, side) of image [3, H, W] 0..1 -> [N, 3, 128, 128] in [-1, 1]. Several squares
    of one side inside the photo (a search level) are cut from the photo scaled once (their offsets rounded
    to the scaled grid, under side/256 pixels off); any others one by one."""
    _, height, width = image.shape
    side = squares[0][2]
    inside = all(t >= 0 and l >= 0 and t + s <= height and l + s <= width and s == side for t, l, s in squares)
    if len(squares) == 1 or not inside:
        return torch.stack([_square(image, *square) for square in squares])
    scale = INPUT_SIZE / side
    size = (max(round(height * scale), INPUT_SIZE), max(round(width * scale), INPUT_SIZE))
    scaled = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                           antialias=True)[0] * 2 - 1  # [3, h, w]
    corners = [(min(round(t * scale), size[0] - INPUT_SIZE), min(round(l * scale), size[1] - INPUT_SIZE))
               for t, l, _ in squares]
    return torch.stack([scaled[:, t : t + INPUT_SIZE, l : l + INPUT_SIZE] for t, l in corners])


def _faces_in(image: torch.Tensor, squares: list[tuple[int, int, int]]) -> tuple[torch.Tensor, ...]:
    """Run the squares of image [3, H, W] as one batch -> every anchor's box [N*896, 4] (x0, y0, x1, y1)
    and keypoints [N*896, 6, 2] in photo pixels, and scores [N*896]. A box cut by a square's inner edge
    (one inside the photo) scores 0: the squares that hold that face whole will find it."""
    _, height, width = image.shape
    boxes, logits = load_blazeface()(_squares(image, squares).cpu())
    found = []
    for (top, left, side), raw, logit in zip(squares, boxes, logits):
        corners, points, scores = decode(raw, logit)  # square units 0..1
        inner = torch.tensor([left > 0, top > 0, left + side < width, top + side < height])
        cut = torch.cat([corners[:, :2] < EDGE_MARGIN, corners[:, 2:] > 1 - EDGE_MARGIN], dim=1) & inner  # [896, 4]
        origin = torch.tensor([left, top], dtype=torch.float32)
        corners = rearrange(corners, "n (c k) -> n c k", k=2) * side + origin[None, None]  # [896, 2, 2]
        found.append((corners.flatten(1), points * side + origin, scores.masked_fill(cut.any(dim=1), 0.0)))
    return tuple(torch.cat(part) for part in zip(*found))


@torch.no_grad()
def detect_faces(image: torch.Tensor) -> list[Detection]:
    """image [3, H, W] float 0..1 (any size) -> the faces, boxes (x0, y0, x1, y1) and keypoints in
    pixels, best first.

    The short-range model is made for faces that fill a good part of its 128x128 input, so the photo
    is searched coarse to fine (search_levels: 1 + 2 + 15 squares for a 4:3 photo, each level one
    batch). Each candidate of a level (score >= MIN_SCORE after weighted NMS) gets a second look: a
    square LOOK_SCALE times its size around it, where the model sees the face at its favourite scale.
    Faces scoring >= SURE_SCORE at the second look are the answer; without any, the next level is searched.
    """
    _, height, width = image.shape
    for squares in search_levels(height, width):
        candidates = weighted_nms(*_faces_in(image, squares))
        if not candidates:
            continue
        looks = []
        for face in candidates:
            x0, y0, x1, y1 = face.box.tolist()
            side = max(x1 - x0, y1 - y0, 1.0) * LOOK_SCALE
            looks.append((round((y0 + y1 - side) / 2), round((x0 + x1 - side) / 2), max(round(side), 1)))
        confirmed = weighted_nms(*_faces_in(image, looks), min_score=SURE_SCORE)
        if confirmed:
            return confirmed
    return []
