"""Faces in a photo of any size, with the shipped BlazeFace short-range detector (models/blazeface.py).

The short-range model is trained on faces that fill much of its 128x128 input (selfie distance), so
a small face in a big photo is looked for in smaller windows, and every candidate is confirmed by a
second look at its best scale (see `detect_faces`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .loading.builtin import blazeface
from .models.blazeface import INPUT_SIZE, Detection, decode, weighted_nms

WINDOW_DIVISOR = 2  # the finest search windows are the short side / 2
LOOK_SCALE = 3.0  # second-look square: the candidate's box side times this
SURE_SCORE = 0.75  # a face is kept if its second look scores this much
EDGE_MARGIN = 0.01  # a box this close to a square's inner edge (square units) counts as cut


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
    boxes, logits = blazeface()(_squares(image, squares).cpu())
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
