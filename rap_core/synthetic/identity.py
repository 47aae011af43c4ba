"""A cartoon identity: every trait of one synthetic face, drawn from a seed.

Coordinates are normalised to the square image: x and y run from -1 (left, top) to +1 (right,
bottom), so one identity renders at any size. Lengths are in the same units (the image is 2 wide).
Colours are RGB triples in 0..1. The face is a head-and-shoulders portrait: head roughly centred a
little above the middle, shoulders cut by the bottom edge.
"""

from __future__ import annotations

import colorsys
import random
from dataclasses import dataclass

RGB = tuple[float, float, float]

HAIR_STYLES = ("bald", "short", "fringe", "long", "bun", "curly")
NECKLINES = ("round", "v", "high")
BACKGROUNDS = ("vertical", "diagonal", "radial", "stripes")

_SKIN_LIGHT, _SKIN_DARK = (0.98, 0.85, 0.74), (0.33, 0.21, 0.14)
_HAIR_COLOURS = (
    (0.08, 0.06, 0.05),
    (0.25, 0.15, 0.08),
    (0.45, 0.28, 0.14),
    (0.62, 0.30, 0.12),
    (0.85, 0.70, 0.40),
    (0.70, 0.70, 0.72),
    (0.20, 0.30, 0.70),
    (0.80, 0.35, 0.55),
)
_EYE_COLOURS = ((0.35, 0.20, 0.10), (0.20, 0.40, 0.75), (0.25, 0.55, 0.30), (0.50, 0.40, 0.20), (0.45, 0.50, 0.55))


@dataclass(frozen=True)
class Identity:
    """Every trait of one face (normalised coordinates, see the module docstring)."""

    face_y: float  # centre of the skull ellipse
    face_rx: float  # skull half-width
    face_ry: float  # skull half-height
    jaw_width: float  # jaw half-width as a fraction of face_rx
    chin: float  # how far the chin reaches below the skull ellipse, as a fraction of face_ry
    skin: RGB
    ear_size: float  # ear half-height as a fraction of face_ry
    hair_style: str  # one of HAIR_STYLES
    hair: RGB
    hairline: float  # forehead height: hair edge above face_y, as a fraction of face_ry
    hair_volume: float  # how far hair stands out of the skull, as a fraction of face_rx
    eye_y: float  # eye centres below face_y, as a fraction of face_ry
    eye_spacing: float  # eye centres from the face's midline, as a fraction of face_rx
    eye_size: float  # eye half-width as a fraction of face_rx
    iris: RGB
    brow_thickness: float  # brow half-height as a fraction of face_ry
    brow_tilt: float  # brow outer end raised (+) or lowered (-), as a fraction of face_ry
    nose_length: float  # as a fraction of face_ry
    nose_width: float  # as a fraction of face_rx
    mouth_y: float  # mouth centre below face_y, as a fraction of face_ry
    mouth_width: float  # lip half-width at rest, as a fraction of face_rx
    lips: RGB
    clothing: RGB
    neckline: str  # one of NECKLINES
    shoulder_width: float  # shoulder half-width
    background: str  # one of BACKGROUNDS
    background_colors: tuple[RGB, RGB]
    background_angle: float  # direction of a gradient or of stripes, radians
    background_frequency: float  # stripes per image width


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(x + (y - x) * t for x, y in zip(a, b))  # type: ignore[return-value]


def _hsv(rng: random.Random, saturation: tuple[float, float], value: tuple[float, float]) -> RGB:
    return colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))


def sample_identity(seed: int) -> Identity:
    """The identity of `seed`: the same seed gives the same face on every machine."""
    rng = random.Random(f"identity:{seed}")
    skin = _mix(_SKIN_LIGHT, _SKIN_DARK, rng.random() ** 1.2)
    skin = _mix(skin, (skin[0], skin[1] * 0.9, skin[2] * 0.8), rng.random())
    hair = rng.choice(_HAIR_COLOURS)
    first = _hsv(rng, (0.15, 0.6), (0.35, 0.95))
    second = _mix(first, _hsv(rng, (0.1, 0.7), (0.2, 0.9)), rng.uniform(0.4, 1.0))
    return Identity(
        face_y=rng.uniform(-0.16, -0.07),
        face_rx=rng.uniform(0.36, 0.44),
        face_ry=rng.uniform(0.45, 0.53),
        jaw_width=rng.uniform(0.62, 0.88),
        chin=rng.uniform(0.04, 0.14),
        skin=skin,
        ear_size=rng.uniform(0.14, 0.20),
        hair_style=rng.choice(HAIR_STYLES),
        hair=hair,
        hairline=rng.uniform(0.45, 0.62),
        hair_volume=rng.uniform(0.06, 0.20),
        eye_y=rng.uniform(-0.02, 0.10),
        eye_spacing=rng.uniform(0.36, 0.48),
        eye_size=rng.uniform(0.17, 0.24),
        iris=rng.choice(_EYE_COLOURS),
        brow_thickness=rng.uniform(0.025, 0.05),
        brow_tilt=rng.uniform(-0.05, 0.06),
        nose_length=rng.uniform(0.14, 0.22),
        nose_width=rng.uniform(0.10, 0.17),
        mouth_y=rng.uniform(0.55, 0.63),
        mouth_width=rng.uniform(0.30, 0.40),
        lips=_mix(skin, (0.70, 0.18, 0.22), rng.uniform(0.45, 0.8)),
        clothing=_hsv(rng, (0.25, 0.85), (0.2, 0.9)),
        neckline=rng.choice(NECKLINES),
        shoulder_width=rng.uniform(0.8, 0.98),
        background=rng.choice(BACKGROUNDS),
        background_colors=(first, second),
        background_angle=rng.uniform(-0.6, 0.6),
        background_frequency=rng.uniform(2.0, 4.0),
    )
