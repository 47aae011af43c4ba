"""Faces in a photo of any size, with the shipped BlazeFace short-range detector (models/blazeface.py).

The short-range model is trained on faces that fill much of its 128x128 input (selfie distance), so
a small face in a big photo is looked for in smaller windows, and every candidate is confirmed by a
second look at its best scale (see `detect_faces`).

Every square is fed to the network at 128x128, so a megapixel photo holds far more pixels than the
search can use: it is scaled down once, to a working image in which the finest search windows span
128 pixels, and each square is cut from the coarser of working image and photo that still gives it
128 pixels (`Pyramid`). Boxes and keypoints come back in photo pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange

from .errors import RAPInputError
from .loading.builtin import blazeface
from .models.blazeface import INPUT_SIZE, MIN_SCORE, Detection, decode, weighted_nms

WINDOW_DIVISOR = 2  # the finest search windows are the short side / 2
LOOK_SCALE = 3.0  # second-look square: the candidate's box side times this
SURE_SCORE = 0.75  # a face is kept if its second look scores this much
EDGE_MARGIN = 0.01  # a box this close to a square's inner edge (square units) counts as cut
PASS_SQUARES = 4  # consecutive search levels with at most this many squares in all share a forward pass

Square = tuple[int, int, int]  # (top, left, side) in photo pixels


def _starts(length: int, side: int) -> list[int]:
    """Offsets of windows of `side` pixels covering `length` pixels, overlapping by half a window."""
    return sorted(set(range(0, length - side, max(side // 2, 1))) | {length - side})


def search_levels(height: int, width: int) -> list[list[Square]]:
    """The squares (top, left, side) in pixels that detect_faces searches, coarse to fine: the whole
    photo (its long side, centred: letterboxed), then windows of the short side, then of half of it."""
    long, short = max(height, width), min(height, width)
    levels = [[((height - long) // 2, (width - long) // 2, long)]]
    for side in sorted({short, short // WINDOW_DIVISOR} - {long, 0}, reverse=True):
        levels.append([(top, left, side) for top in _starts(height, side) for left in _starts(width, side)])
    return levels


class Pyramid(NamedTuple):
    """The photo [3, H, W] 0..1 and its working image [3, h, w]: the photo scaled by `scale` (<= 1) so that
    the finest search windows span 128 pixels (the photo itself where they are smaller). One antialiased
    resize of the photo serves every level; only squares finer than the working image (second looks at
    small faces) are cut from the photo."""

    photo: torch.Tensor
    working: torch.Tensor
    scale: float

    @classmethod
    def of(cls, photo: torch.Tensor, levels: list[list[Square]]) -> Pyramid:
        """The pyramid of photo [3, H, W] 0..1 for the search levels of its size (search_levels). The
        working image has the photo's size times `scale`, rounded: its pixel grid matches the photo's
        scaled by `scale` to under half a pixel."""
        _, height, width = photo.shape
        scale = min(INPUT_SIZE / min(side for *_, side in levels[-1]), 1.0)
        if scale == 1.0:
            return cls(photo, photo, scale)
        size = (max(round(height * scale), 1), max(round(width * scale), 1))
        working = F.interpolate(photo[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        return cls(photo, working, scale)  # working: [3, h, w]

    def source(self, side: int) -> tuple[torch.Tensor, float]:
        """The coarsest image in which a square of `side` photo pixels spans 128 pixels (half a pixel
        of rounding allowed), and its scale."""
        return (self.working, self.scale) if side * self.scale >= INPUT_SIZE - 0.5 else (self.photo, 1.0)


def _squares(pyramid: Pyramid, squares: list[Square]) -> torch.Tensor:
    """The squares (top, left, side) of the photo -> [N, 3, 128, 128] in [-1, 1], black outside the photo,
    channels-last in memory as the network runs. Each is cut from pyramid.source(side) and resized there
    (not at all when it spans 128 pixels)."""
    pixels = pyramid.photo.new_zeros(len(squares), INPUT_SIZE, INPUT_SIZE, 3)  # [N, 128, 128, 3], 0..1
    batch = rearrange(pixels, "n h w c -> n c h w")  # [N, 3, 128, 128], a view
    for index, (top, left, side) in enumerate(squares):
        image, scale = pyramid.source(side)
        _, height, width = image.shape
        top, left, side = top * scale, left * scale, side * scale  # in the source's pixels
        y0, y1 = max(round(top), 0), min(round(top + side), height)
        x0, x1 = max(round(left), 0), min(round(left + side), width)
        if y1 <= y0 or x1 <= x0:  # wholly outside the photo
            continue
        factor = INPUT_SIZE / side
        size = (min(max(round((y1 - y0) * factor), 1), INPUT_SIZE), min(max(round((x1 - x0) * factor), 1), INPUT_SIZE))
        part = image[:, y0:y1, x0:x1]  # [3, y1 - y0, x1 - x0]
        if part.shape[1:] != size:
            part = F.interpolate(part[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        oy = min(round((y0 - top) * factor), INPUT_SIZE - size[0])
        ox = min(round((x0 - left) * factor), INPUT_SIZE - size[1])
        batch[index, :, oy : oy + size[0], ox : ox + size[1]] = part
    return batch.mul_(2).sub_(1)


def _faces_in(pyramid: Pyramid, squares: list[Square]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the squares of the photo as one batch -> every anchor's box [N, 896, 4] (x0, y0, x1, y1) and
    keypoints [N, 896, 6, 2] in photo pixels, and scores [N, 896]. A box cut by a square's inner edge (one
    inside the photo) scores 0: the squares that hold that face whole will find it."""
    _, height, width = pyramid.photo.shape
    raw, logits = blazeface()(_squares(pyramid, squares).cpu())  # [N, 896, 16], [N, 896]
    corners, points, scores = decode(raw, logits)  # square units 0..1: [N, 896, 4], [N, 896, 6, 2], [N, 896]
    top, left, side = torch.tensor(squares, dtype=torch.float32).unbind(1)  # [N] each
    inner = torch.stack([left > 0, top > 0, left + side < width, top + side < height], dim=1)  # [N, 4]
    edges = torch.cat([corners[..., :2] < EDGE_MARGIN, corners[..., 2:] > 1 - EDGE_MARGIN], dim=-1)  # [N, 896, 4]
    cut = (edges & inner[:, None]).any(dim=-1)  # [N, 896]
    origin = torch.stack([left, top], dim=1)[:, None, None]  # [N, 1, 1, 2] (x, y)
    side = side[:, None, None, None]  # [N, 1, 1, 1]
    corners = rearrange(corners, "n a (c k) -> n a c k", k=2) * side + origin  # [N, 896, 2, 2]
    return rearrange(corners, "n a c k -> n a (c k)"), points * side + origin, scores.masked_fill(cut, 0.0)


def _merged(
    boxes: torch.Tensor, points: torch.Tensor, scores: torch.Tensor, min_score: float = MIN_SCORE
) -> list[Detection]:
    """weighted_nms over all anchors of some squares: boxes [N, 896, 4], keypoints [N, 896, 6, 2], scores [N, 896]."""
    return weighted_nms(
        rearrange(boxes, "n a k -> (n a) k"),  # [N*896, 4]
        rearrange(points, "n a p k -> (n a) p k"),  # [N*896, 6, 2]
        rearrange(scores, "n a -> (n a)"),  # [N*896]
        min_score=min_score,
    )


def _passes(levels: list[list[Square]]) -> list[list[list[Square]]]:
    """The search levels grouped into forward passes: consecutive levels share one while they hold at most
    PASS_SQUARES squares in all. On a CPU a pass costs about as much as two or three squares more than its
    squares do (chiefly the depthwise convolutions' per-call setup), so the whole photo and the short-side
    windows share one; the finer levels go alone, as a face found earlier spares them."""
    passes = [[levels[0]]]
    for level in levels[1:]:
        if sum(map(len, passes[-1])) + len(level) <= PASS_SQUARES:
            passes[-1].append(level)
        else:
            passes.append([level])
    return passes


def _look(face: Detection) -> Square:
    """The second-look square around a candidate: LOOK_SCALE times its box's longer side, centred on it."""
    x0, y0, x1, y1 = face.box.tolist()
    side = max(x1 - x0, y1 - y0, 1.0) * LOOK_SCALE
    return round((y0 + y1 - side) / 2), round((x0 + x1 - side) / 2), max(round(side), 1)


@torch.no_grad()
def detect_faces(image: torch.Tensor) -> list[Detection]:
    """image [3, H, W] float 0..1 (any size) -> the faces, boxes (x0, y0, x1, y1) and keypoints in
    pixels, best first.

    The short-range model is made for faces that fill a good part of its 128x128 input, so the photo
    is searched coarse to fine (search_levels: 1 + 2 + 15 squares for a 4:3 photo; _passes batches
    them). Each candidate of a level (score >= MIN_SCORE after weighted NMS) gets a second look: a
    square LOOK_SCALE times its size around it, where the model sees the face at its favourite scale.
    Faces scoring >= SURE_SCORE at the second look are the answer; without any, the next level is searched.
    Squares are cut from the photo's Pyramid: one downscale of the photo serves all levels.
    """
    if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
        raise RAPInputError(
            f"detect_faces takes an RGB image [3, H, W] of floats 0..1, got shape "
            f"{tuple(image.shape)}; for a [H, W, 3] photo pass rearrange(photo, 'h w c -> c h w')."
        )
    _, height, width = image.shape
    levels = search_levels(height, width)
    pyramid = Pyramid.of(image.float(), levels)
    for group in _passes(levels):
        found = _faces_in(pyramid, [square for level in group for square in level])  # [N, 896, ...] each
        sizes = [len(level) for level in group]
        for boxes, points, scores in zip(*(part.split(sizes) for part in found)):  # one level's squares
            candidates = _merged(boxes, points, scores)
            if not candidates:
                continue
            confirmed = _merged(*_faces_in(pyramid, [_look(face) for face in candidates]), min_score=SURE_SCORE)
            if confirmed:
                return confirmed
    return []
