"""What a synthetic face is made of: its layers, back to front, as signed distances.

Each part of the face is one function that returns its layers, so every shape's closure sees only
the numbers of its own part. Per-frame controls arrive as [N] tensors (openness, width, blink,
see `render`) and shapes that follow them hold [N, 1, 1] columns. `pixel` (the pixel side in
normalised units) keeps thin lines at least about a pixel wide at small sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange

from .identity import RGB, Identity
from .shapes import ellipse, rounded_box, smooth_union

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DARK = (0.12, 0.08, 0.08)


@dataclass(frozen=True)
class Layer:
    """One shape of one colour, painted over the layers before it."""

    distance: Distance  # (x [N, 1, w], y [N, h, 1]) -> [N, h, w]; N = 1 for a layer that never changes
    colour: RGB
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 holding the whole shape at zero sway
    moves: bool = True  # follows the head sway
    role: str = "front"  # "behind" (under the face), "face", "front" or "mouth" (over the face)


def _scale(colour: RGB, factor: float) -> RGB:
    return tuple(min(1.0, c * factor) for c in colour)  # type: ignore[return-value]


def _column(values: torch.Tensor) -> torch.Tensor:
    return rearrange(values.to(torch.float32), "n -> n 1 1")  # [N] -> [N, 1, 1]


def _hair_behind(s: Identity) -> list[Layer]:
    rx, ry, fy, vol = s.face_rx, s.face_ry, s.face_y, s.hair_volume
    if s.hair_style == "long":
        half_w, half_h = rx * (1 + vol), ry * (1 + 0.6 * vol)

        def long(x, y):
            return smooth_union(
                ellipse(x, y, 0.0, fy - 0.02, half_w, half_h),
                rounded_box(x, y, 0.0, fy + 0.75 * ry, 0.98 * half_w, 0.75 * ry, 0.15),
                0.05,
            )

        pad = 0.05 / 4  # smooth_union swells a seam by at most k / 4
        return [Layer(long, s.hair, (-half_w - pad, half_w + pad, fy - 0.02 - half_h, fy + 1.5 * ry), role="behind")]
    if s.hair_style == "curly":
        cy, half_w, half_h, curl = fy - 0.12 * ry, rx * (1.3 + vol), ry * (1.12 + 0.7 * vol), 0.04 * rx

        def curls(x, y):
            angle = torch.atan2(x, cy - y)  # 0 at the crown, +-pi under the chin
            return (ellipse(x, y, 0.0, cy, half_w, half_h) - curl * torch.cos(11.0 * angle)) / (
                1 + 11.0 * curl / half_h
            )

        return [
            Layer(curls, s.hair, (-half_w - curl, half_w + curl, cy - half_h - curl, cy + half_h + curl), role="behind")
        ]
    if s.hair_style == "bun":
        r = 0.33 * rx
        cy = fy - ry * (1 + 0.6 * vol) - 0.6 * r
        return [Layer(lambda x, y: ellipse(x, y, 0.0, cy, r, r), s.hair, (-r, r, cy - r, cy + r), role="behind")]
    return []


def _body(s: Identity) -> list[Layer]:
    """Neck, clothing and neckline: they never move."""
    neck_w, neck_top, chest, sw = 0.42 * s.face_rx, s.face_y + 0.45 * s.face_ry, 0.62, s.shoulder_width
    neck_bottom = chest + 0.1
    box = (-sw, sw, chest, 1.0)

    def body(x, y):
        return rounded_box(x, y, 0.0, chest + 0.5, sw, 0.5, 0.3)

    def neck(x, y):
        return rounded_box(x, y, 0.0, (neck_top + neck_bottom) / 2, neck_w, (neck_bottom - neck_top) / 2, 0.04)

    layers = [
        Layer(neck, _scale(s.skin, 0.86), (-neck_w, neck_w, neck_top, neck_bottom), moves=False, role="behind"),
        Layer(body, s.clothing, box, moves=False, role="behind"),
    ]
    chest_skin = _scale(s.skin, 0.95)
    if s.neckline == "round":

        def round_neck(x, y):
            return torch.maximum(body(x, y), ellipse(x, y, 0.0, chest, 1.5 * neck_w, 0.14))

        layers.append(Layer(round_neck, chest_skin, box, moves=False, role="behind"))
    elif s.neckline == "v":
        slope = 2.2

        def v_neck(x, y):
            return torch.maximum(body(x, y), (y - chest - 0.3 + slope * x.abs()) / math.hypot(1.0, slope))

        layers.append(Layer(v_neck, chest_skin, box, moves=False, role="behind"))
    else:

        def collar(x, y):
            return rounded_box(x, y, 0.0, chest, 1.2 * neck_w, 0.08, 0.05)

        layers.append(
            Layer(
                collar,
                _scale(s.clothing, 0.8),
                (-1.2 * neck_w, 1.2 * neck_w, chest - 0.08, chest + 0.08),
                moves=False,
                role="behind",
            )
        )
    return layers


def _head(s: Identity) -> list[Layer]:
    """Ears and the face: skull and jaw joined smoothly."""
    rx, ry, fy = s.face_rx, s.face_ry, s.face_y
    ear_x, ear_y, ear_h = 0.96 * rx, fy + 0.08 * ry, s.ear_size * ry
    ear_w = 0.55 * ear_h
    ear_box = (-ear_x - ear_w, ear_x + ear_w, ear_y - ear_h, ear_y + ear_h)
    jaw_cy, jaw_ry = fy + 0.35 * ry, (0.65 + s.chin) * ry

    def face(x, y):
        return smooth_union(ellipse(x, y, 0.0, fy, rx, ry), ellipse(x, y, 0.0, jaw_cy, s.jaw_width * rx, jaw_ry), 0.04)

    seam = 0.04 / 4  # smooth_union swells a seam by at most k / 4

    return [
        Layer(
            lambda x, y: ellipse(x.abs(), y, ear_x, ear_y, ear_w, ear_h), _scale(s.skin, 0.93), ear_box, role="behind"
        ),
        Layer(
            lambda x, y: ellipse(x.abs(), y, ear_x + 0.1 * ear_w, ear_y, 0.5 * ear_w, 0.6 * ear_h),
            _scale(s.skin, 0.78),
            ear_box,
            role="behind",
        ),
        Layer(face, s.skin, (-rx - seam, rx + seam, fy - ry - seam, jaw_cy + jaw_ry + seam), role="face"),
    ]


def _hair_front(s: Identity) -> list[Layer]:
    """The hair over the skull: a cap with the face window (an ellipse under the hairline) cut out."""
    if s.hair_style == "bald":
        return []
    rx, ry, fy, vol = s.face_rx, s.face_ry, s.face_y, s.hair_volume
    cap_rx, cap_ry, bottom = rx * (1 + vol), ry * (1 + 0.7 * vol), fy + 0.1 * ry
    if s.hair_style == "fringe":
        edge = (0.38 + 0.1 * (s.hairline - 0.45) / 0.17) * ry
        win_cy, win_rx = fy + 0.6 * ry, 1.3 * rx
    else:
        edge = s.hairline * ry
        win_cy, win_rx = fy + 0.25 * ry, 0.92 * rx
    win_ry = win_cy - fy + edge

    def cap(x, y):
        hair = torch.maximum(ellipse(x, y, 0.0, fy - 0.02, cap_rx, cap_ry), y - bottom)
        return torch.maximum(hair, -ellipse(x, y, 0.0, win_cy, win_rx, win_ry))

    return [Layer(cap, s.hair, (-cap_rx, cap_rx, fy - 0.02 - cap_ry, bottom))]


def _eyes(s: Identity, blink: torch.Tensor, pixel: float) -> list[Layer]:
    """Both eyes at once (mirrored in x): outline, white, iris, pupil, then the lid and its lash line."""
    rx, ry, fy = s.face_rx, s.face_ry, s.face_y
    ex, ey, ew = s.eye_spacing * rx, fy + s.eye_y * ry, s.eye_size * rx
    eh, line = 0.6 * ew, max(0.012, 0.7 * pixel)
    iris = 0.9 * eh
    box = (-ex - ew - 2 * line, ex + ew + 2 * line, ey - eh - 2 * line, ey + eh + 2 * line)
    lid = ey - eh - line + (0.2 + 0.8 * _column(blink)) * (2 * eh + 2 * line) * 1.02  # [N, 1, 1] lid edge height

    def white(x, y):
        return ellipse(x.abs(), y, ex, ey, ew, eh)

    def rim(x, y, grow):
        return ellipse(x.abs(), y, ex, ey, ew + grow * line, eh + grow * line)

    return [
        Layer(lambda x, y: rim(x, y, 1.0), DARK, box),
        Layer(white, (0.97, 0.97, 0.95), box),
        Layer(lambda x, y: torch.maximum(white(x, y), ellipse(x.abs(), y, ex, ey, iris, iris)), s.iris, box),
        Layer(lambda x, y: ellipse(x.abs(), y, ex, ey, 0.45 * iris, 0.45 * iris), (0.04, 0.04, 0.05), box),
        Layer(lambda x, y: torch.maximum(rim(x, y, 1.5), y - lid), s.skin, box),
        Layer(lambda x, y: torch.maximum(rim(x, y, 1.0), (y - lid).abs() - 0.8 * line), DARK, box),
    ]


def _brows(s: Identity, pixel: float) -> list[Layer]:
    rx, ry, fy = s.face_rx, s.face_ry, s.face_y
    ex, ew = s.eye_spacing * rx, s.eye_size * rx
    by, bw, bh = fy + s.eye_y * ry - 1.14 * ew, 1.05 * ew, max(s.brow_thickness * ry, 0.6 * pixel)
    lift = abs(s.brow_tilt) * ry + 0.6 * bh
    steepest = (abs(s.brow_tilt) * ry + 1.2 * bh) / bw  # largest slope of the bent midline over the brow

    def brow(x, y):
        u = (x.abs() - ex) / bw
        centre = by - s.brow_tilt * ry * u - 0.6 * bh * (1 - u * u)
        return ellipse(x.abs(), y - centre + by, ex, by, bw, bh) / math.hypot(1.0, steepest)

    return [Layer(brow, _scale(s.hair, 0.75), (-ex - bw, ex + bw, by - bh - lift, by + bh + lift))]


def _nose(s: Identity, pixel: float) -> list[Layer]:
    nw = s.nose_width * s.face_rx
    tip = s.face_y + (s.eye_y + s.nose_length + 0.04) * s.face_ry
    nostril = max(0.18 * nw, 0.5 * pixel)
    box = (
        -max(nw, 0.45 * nw + nostril),
        max(nw, 0.45 * nw + nostril),
        tip - 0.7 * nw,
        tip + max(0.7 * nw, 0.25 * nw + nostril),
    )
    return [
        Layer(lambda x, y: ellipse(x, y, 0.0, tip, nw, 0.7 * nw), _scale(s.skin, 0.9), box),
        Layer(
            lambda x, y: ellipse(x.abs(), y, 0.45 * nw, tip + 0.25 * nw, nostril, nostril), _scale(s.skin, 0.55), box
        ),
    ]


def _mouth(s: Identity, openness: torch.Tensor, width: torch.Tensor, pixel: float) -> list[Layer]:
    """Lips around a dark interior whose height follows openness (the jaw drops: it grows mostly
    downwards) and whose width follows width; teeth show along the top once it is open."""
    rx, ry = s.face_rx, s.face_ry
    my, lip, slit = s.face_y + s.mouth_y * ry, 0.055 * ry, max(0.008, 0.6 * pixel)
    half_w = s.mouth_width * rx * (0.75 + 0.5 * _column(width))  # [N, 1, 1]
    gap = _column(openness) * 0.15 * ry * (1.15 - 0.3 * _column(width))  # [N, 1, 1] interior half-height
    cy = my + 0.75 * gap  # [N, 1, 1]
    inner_h = torch.clamp_min(gap, slit)
    w_max, gap_max = 1.25 * s.mouth_width * rx, 0.15 * 1.15 * ry
    box = (-w_max, w_max, my - 0.25 * gap_max - lip, my + 1.75 * gap_max + lip)

    def interior(x, y):
        return ellipse(x, y, 0.0, cy, 0.82 * half_w, inner_h)

    def teeth(x, y):
        return torch.maximum(interior(x, y), y - (cy - 0.55 * gap)) + torch.relu(2 * slit - gap)

    return [
        Layer(lambda x, y: ellipse(x, y, 0.0, cy, half_w, gap + lip), s.lips, box, role="mouth"),
        Layer(interior, (0.25, 0.05, 0.07), box, role="mouth"),
        Layer(teeth, (0.95, 0.94, 0.90), box, role="mouth"),
    ]


def face_layers(
    s: Identity, openness: torch.Tensor, width: torch.Tensor, blink: torch.Tensor, pixel: float
) -> list[Layer]:
    """All layers of `s`, back to front, for N frames of controls (each [N])."""
    return [
        *_hair_behind(s),
        *_body(s),
        *_head(s),
        *_hair_front(s),
        *_eyes(s, blink, pixel),
        *_brows(s, pixel),
        *_nose(s, pixel),
        *_mouth(s, openness, width, pixel),
    ]
