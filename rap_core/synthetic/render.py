"""Drawing an identity: frames of a cartoon talking head, and the layout of its stable regions.

The picture is a stack of layers painted back to front over a static background: hair behind the
head, neck and clothing (static), ears, face, hair in front, eyes with lids, brows, nose, lips with
the mouth interior and teeth. Every layer is a signed distance turned into anti-aliased coverage
(`shapes.coverage`) and painted only inside its bounding box, so small features stay cheap at
512x512. Head layers move with the sway (a translation of at most SWAY_LIMIT per axis); the
background, neck and clothing never move.

Per-frame controls, all [T] in 0..1 unless said: openness (0 = lips closed), width (0 = narrow
rounded 'o', 0.5 = rest, 1 = wide 'ee'), blink (0 = eyes open, 1 = closed) and sway [T, 2]
(x, y head offset in normalised units, each within +-SWAY_LIMIT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange

from ..errors import RAPInputError
from .identity import Identity
from .layers import face_layers
from .shapes import coverage

FACE_MARGIN = 0.2  # the face box reaches this share of the face oval's size beyond it, each way
SWAY_LIMIT = 0.08  # largest head offset per axis, normalised units (the image is 2 wide): 5 px at 128 px
MIN_SIZE = 32
_CHUNK_PIXELS = 1 << 22  # frames are drawn in groups of at most this many pixels


@dataclass(frozen=True)
class Layout:
    """Where an identity's pixels are stable, for every blink and mouth state and every head offset
    up to the layout's sway (SWAY_LIMIT: any frame; a pixel or so: the centre pose, for masks that
    follow the head, eval.motion.follow).

    background [size, size] bool: pixels that only ever show the background.
    face_skin [size, size] bool: pixels that only ever show bare face skin (`identity.skin`).
    mouth_box (y0, y1, x0, x1): pixel rows y0..y1-1 and columns x0..x1-1 hold the lips and mouth.
    face_box (top, bottom, left, right): fractions of the image around the face oval of the centre
    pose, grown by FACE_MARGIN of its size each way: the crop the identity branch sees (rap_core/face.py).
    """

    background: torch.Tensor
    face_skin: torch.Tensor
    mouth_box: tuple[int, int, int, int]
    face_box: tuple[float, float, float, float]


def _axis(size: int) -> torch.Tensor:
    return (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0  # [size] pixel centres


def _background(identity: Identity, size: int) -> torch.Tensor:
    """The static backdrop: [size, size, 3]."""
    axis = _axis(size)
    y, x = axis[:, None], axis[None, :]  # [size, 1], [1, size]
    angle = identity.background_angle
    if identity.background == "vertical":
        t = 0.5 + 0.5 * (x * math.sin(angle) + y * math.cos(angle)) / (abs(math.sin(angle)) + abs(math.cos(angle)))
    elif identity.background == "diagonal":
        t = 0.5 + 0.25 * (x * math.cos(angle + 0.8) + y * math.sin(angle + 0.8))
    elif identity.background == "radial":
        t = torch.sqrt(x * x + (y - identity.face_y) ** 2) / 1.6
    else:
        t = 0.5 + 0.5 * torch.sin(math.pi * identity.background_frequency * (x * math.cos(angle) + y * math.sin(angle)))
    first, second = (torch.tensor(c, dtype=torch.float32) for c in identity.background_colors)
    return torch.lerp(first, second, t.clamp(0.0, 1.0)[..., None])  # [size, size, 3]


def _pixel_range(lo: float, hi: float, margin: float, size: int) -> tuple[int, int]:
    """Pixels whose centres lie within [lo - margin, hi + margin], widened by a pixel each side."""
    scale = size / 2.0
    return max(0, math.floor((lo - margin + 1) * scale) - 1), min(size, math.ceil((hi + margin + 1) * scale) + 1)


def _check_controls(openness, width, blink, sway, size: int) -> tuple[torch.Tensor, ...]:
    if size < MIN_SIZE:
        raise RAPInputError(f"The render size must be at least {MIN_SIZE} pixels, got {size}.")
    controls = [torch.as_tensor(v, dtype=torch.float32) for v in (openness, width, blink, sway)]
    frames = controls[0].shape[0] if controls[0].ndim == 1 else -1
    shapes_ok = all(v.ndim == 1 and v.shape[0] == frames for v in controls[:3]) and tuple(controls[3].shape) == (
        frames,
        2,
    )
    if frames < 1 or not shapes_ok:
        raise RAPInputError(
            "render() takes openness, width and blink shaped [T] and sway shaped [T, 2] for the same T >= 1; got "
            + ", ".join(str(tuple(v.shape)) for v in controls)
            + "."
        )
    if any(not torch.isfinite(v).all() or v.min() < 0 or v.max() > 1 for v in controls[:3]):
        raise RAPInputError("openness, width and blink must be finite values in 0..1; clamp them before rendering.")
    if not torch.isfinite(controls[3]).all() or controls[3].abs().max() > SWAY_LIMIT + 1e-6:
        raise RAPInputError(
            f"sway must stay within +-{SWAY_LIMIT} (normalised units) on each axis, got a largest offset of "
            f"{controls[3].abs().max().item():.4f}; scale the sway track down."
        )
    return tuple(controls)


def render(identity: Identity, openness, width, blink, sway, size: int) -> torch.Tensor:
    """Frames of `identity`: openness, width, blink [T] in 0..1 and sway [T, 2] -> [T, size, size, 3] float32
    in 0..1."""
    openness, width, blink, sway = _check_controls(openness, width, blink, sway, size)
    frames = openness.shape[0]
    pixel, axis = 2.0 / size, _axis(size)
    out = torch.empty(frames, size, size, 3)
    backdrop = _background(identity, size)
    step = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, frames, step):
        part = slice(start, min(frames, start + step))
        canvas = out[part]  # [N, size, size, 3]
        canvas.copy_(backdrop.expand_as(canvas))
        shift_x, shift_y = rearrange(sway[part], "n xy -> xy n 1 1")  # [N, 1, 1] each
        for layer in face_layers(identity, openness[part], width[part], blink[part], pixel):
            margin = SWAY_LIMIT if layer.moves else 0.0
            x0, x1 = _pixel_range(layer.box[0], layer.box[1], margin, size)
            y0, y1 = _pixel_range(layer.box[2], layer.box[3], margin, size)
            x, y = axis[x0:x1][None, None, :], axis[y0:y1][None, :, None]  # [1, 1, w], [1, h, 1]
            if layer.moves:
                x, y = x - shift_x, y - shift_y  # [N, 1, w], [N, h, 1]
            alpha = coverage(layer.distance(x, y), pixel)[..., None]  # [N or 1, h, w, 1]
            region = canvas[:, y0:y1, x0:x1]
            region += alpha * (torch.tensor(layer.colour) - region)
    return out


def layout(identity: Identity, size: int, sway: float = SWAY_LIMIT) -> Layout:
    """The stable regions of `identity` at `size` over every blink and mouth state and every head
    offset up to `sway` per axis (normalised units, 0..SWAY_LIMIT).

    A moving shape whose signed distance at a pixel centre is d is at least d - sqrt(2)*sway
    away from it under any sway (distances change at most as fast as the point moves), so the masks
    compare distances at zero sway against that reach plus the anti-aliasing ramp and a quarter
    pixel for the estimate in `shapes.ellipse`; mouth and eye states are sampled on a 6x6 grid.
    """
    if size < MIN_SIZE:
        raise RAPInputError(f"The layout size must be at least {MIN_SIZE} pixels, got {size}.")
    if not 0.0 <= sway <= SWAY_LIMIT:
        raise RAPInputError(f"The layout's sway must lie in 0..{SWAY_LIMIT} (normalised units), got {sway}.")
    grid = torch.linspace(0.0, 1.0, 6)
    openness, width = (
        rearrange(v, "a b -> (a b)") for v in torch.meshgrid(grid, grid, indexing="ij")
    )  # [6, 6] -> [36]
    blink = torch.linspace(0.0, 1.0, openness.shape[0])
    pixel, axis = 2.0 / size, _axis(size)
    covered = torch.zeros(size, size, dtype=torch.bool)
    face = torch.zeros(size, size, dtype=torch.bool)
    oval = torch.zeros(size, size, dtype=torch.bool)
    front = torch.zeros(size, size, dtype=torch.bool)
    mouth = torch.zeros(size, size, dtype=torch.bool)
    for layer in face_layers(identity, openness, width, blink, pixel):
        reach = 0.5 * pixel + (math.sqrt(2.0) * sway + 0.25 * pixel if layer.moves else 0.0)
        margin = sway if layer.moves else 0.0
        x0, x1 = _pixel_range(layer.box[0], layer.box[1], margin, size)
        y0, y1 = _pixel_range(layer.box[2], layer.box[3], margin, size)
        distance = layer.distance(axis[x0:x1][None, None, :], axis[y0:y1][None, :, None])  # [36 or 1, h, w]
        nearest = distance.amin(0) < reach  # [h, w]: some state may cover the pixel
        covered[y0:y1, x0:x1] |= nearest
        if layer.role == "face":
            face[y0:y1, x0:x1] = distance.amax(0) < -reach
            oval[y0:y1, x0:x1] = distance.amax(0) < 0  # the centre pose
        elif layer.role in ("front", "mouth"):
            front[y0:y1, x0:x1] |= nearest
        if layer.role == "mouth":
            mouth[y0:y1, x0:x1] |= nearest
    rows, cols = torch.nonzero(mouth, as_tuple=True)
    face_rows, face_cols = torch.nonzero(oval, as_tuple=True)
    top, bottom = int(face_rows.min()) / size, (int(face_rows.max()) + 1) / size
    left, right = int(face_cols.min()) / size, (int(face_cols.max()) + 1) / size
    grow_y, grow_x = FACE_MARGIN * (bottom - top), FACE_MARGIN * (right - left)
    return Layout(
        background=~covered,
        face_skin=face & ~front,
        mouth_box=(int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1),
        face_box=(max(top - grow_y, 0.0), min(bottom + grow_y, 1.0), max(left - grow_x, 0.0), min(right + grow_x, 1.0)),
    )
