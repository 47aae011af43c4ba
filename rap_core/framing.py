"""Portrait framing: which part of a photo the model sees, and how its frames go back into the photo.

FlashHead frames a portrait around the face (its `--use_face_crop`): a square FACE_RATIO times the
face box's width, with 55 % of it above the face's centre. `frame_portrait` finds the face with the
shipped BlazeFace detector (face_detection.py) and frames it so, with the model's aspect ratio and
the preset's face ratio, shifted to lie inside the photo (FlashHead clips it instead, which
stretches faces near an edge); `crop` cuts that region out at the model's size, and `paste` puts
generated frames back over the photo with a feathered seam, so any photo, of any size, can be
animated in place. The "centre" policy is FlashHead's default framing: the photo scaled to cover
the model's size and centre-cropped (media.normalise.prepare_image), exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .config import RAPConfig
from .errors import RAPInputError
from .face_detection import detect_faces
from .media.normalise import cover_and_crop, prepare_image, rgb_image

FACE_RATIO = 2.0  # FlashHead's face_ratio: the framed width over the face box's width
ABOVE_FACE = 0.55  # FlashHead: the share of the framed height above the face box's centre
FEATHER = 1 / 16  # seam ramp width as a fraction of the pasted region's shorter side
PASTE_BATCH = 16  # frames resized at a time by Framing.paste
POLICIES = ("face", "centre")
POLICY_HELP = "The framing policy must be 'face', 'centre' or a box (top, bottom, left, right) in photo pixels;"
Box = tuple[int, int, int, int]  # (top, bottom, left, right) in photo pixels, bottom/right exclusive


def _region_around(
    centre_y: float, top_share: float, centre_x: float, region_w: float, aspect: float, height: int, width: int
) -> Box:
    """The region `region_w` pixels wide and `aspect` (height / width) times as tall, with `top_share` of
    its height above centre_y and centred on centre_x; shrunk (keeping its aspect) where the photo is
    smaller, then shifted inside it. Pixels rounded; at least 8 a side, the smallest image prepare_image takes."""
    region_w = min(max(region_w, 8.0, 8.0 / aspect), width, height / aspect)
    region_h = round(region_w * aspect)
    region_w = round(region_w)
    top = round(min(max(centre_y - top_share * region_h, 0.0), height - region_h))
    left = round(min(max(centre_x - region_w / 2, 0.0), width - region_w))
    return top, top + region_h, left, left + region_w


def _explicit_box(policy, height: int, width: int, aspect: float) -> Box:
    """A (top, bottom, left, right) policy in pixels -> the region the model sees: that box widened to the
    model's aspect ratio around its centre, shifted inside the photo."""
    try:
        top, bottom, left, right = (float(value) for value in policy)
    except (TypeError, ValueError):
        raise RAPInputError(f"{POLICY_HELP} got {policy!r}.") from None
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise RAPInputError(
            f"The framing box (top, bottom, left, right) = {tuple(policy)} does not lie inside the {width}x{height} "
            f"photo: need 0 <= top < bottom <= {height} and 0 <= left < right <= {width}."
        )
    region_w = max(right - left, (bottom - top) / aspect)
    return _region_around((top + bottom) / 2, 0.5, (left + right) / 2, region_w, aspect, height, width)


def _centre_box(height: int, width: int, model_h: int, model_w: int) -> Box:
    """The part of an height x width photo that prepare_image's cover-and-crop keeps, in photo pixels."""
    (cover_h, cover_w), (off_y, off_x) = cover_and_crop(height, width, model_h, model_w)
    top, left = round(off_y * height / cover_h), round(off_x * width / cover_w)
    return (
        top,
        min(top + round(model_h * height / cover_h), height),
        left,
        min(left + round(model_w * width / cover_w), width),
    )


@dataclass(frozen=True, eq=False)
class Framing:
    """A photo framed for the model. photo: [H, W, 3] float32 0..1 (the input, as RGB); height, width:
    the model's frame size; box: (top, bottom, left, right) in photo pixels, the region the model sees
    (the model's aspect ratio, up to a pixel); face: the detected face box (top, bottom, left, right)
    in photo pixels (clipped to the photo), or None; whole: the model sees the whole photo scaled to
    cover its size and centre-cropped ("centre"), rather than the box cut out and scaled."""

    photo: torch.Tensor = field(repr=False)
    height: int
    width: int
    box: Box
    face: tuple[float, float, float, float] | None
    whole: bool = False

    def picture(self) -> torch.Tensor:
        """The portrait as the model takes it: [3, height, width] float32 in [-1, 1] (media.normalise.prepare_image of
        the box, or of the whole photo for the centre framing, whose cover-and-crop keeps the box)."""
        top, bottom, left, right = self.box
        return prepare_image(self.photo if self.whole else self.photo[top:bottom, left:right], self.height, self.width)

    def crop(self) -> torch.Tensor:
        """The model-size portrait [height, width, 3] float32 0..1."""
        return rearrange((self.picture() + 1) / 2, "c h w -> h w c").contiguous()

    def face_box(self) -> tuple[float, float, float, float] | None:
        """The face as (top, bottom, left, right) fractions of the crop, clipped to 0..1 (the identity
        branch's face_box, see face.py), or None without a detected face."""
        if self.face is None:
            return None
        top, bottom, left, right = self.box
        f_top, f_bottom, f_left, f_right = self.face
        fractions = (
            (f_top - top) / (bottom - top),
            (f_bottom - top) / (bottom - top),
            (f_left - left) / (right - left),
            (f_right - left) / (right - left),
        )
        top_f, bottom_f, left_f, right_f = (min(max(value, 0.0), 1.0) for value in fractions)
        return (top_f, bottom_f, left_f, right_f) if top_f < bottom_f and left_f < right_f else None

    def paste(self, frames, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """frames [N, h, w, 3] float 0..1 (the model's output; torch or numpy) -> [N, H, W, 3] float32 0..1:
        each frame resized (bilinear, antialiased) onto the box and blended over the photo. The blend
        weight ramps linearly from 0 at the box's edge to 1 at FEATHER of its shorter side inside it, on
        edges that lie inside the photo (an edge on the photo's border is not feathered); every pixel
        outside the box is the photo's, exactly. Frames go PASTE_BATCH at a time, so memory holds the
        result and one batch; progress(frames done) is called after each batch."""
        x = torch.as_tensor(np.array(frames) if isinstance(frames, np.ndarray) else frames).detach()
        if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0 or min(x.shape[1:3]) == 0:
            raise RAPInputError(
                f"Frames to paste must be shaped [frames, height, width, 3] with at least one frame; got "
                f"{tuple(x.shape)}. Pass the model's video frames (a single frame needs a leading axis of 1)."
            )
        if not x.is_floating_point():
            raise RAPInputError(f"Frames to paste must be float in 0..1, got dtype {x.dtype}; divide uint8 by 255.")
        if not torch.isfinite(x).all():
            raise RAPInputError("Frames to paste contain NaN or infinite values; the generation diverged.")
        top, bottom, left, right = self.box
        weight = _feather(
            bottom - top, right - left, (top > 0, bottom < self.photo.shape[0], left > 0, right < self.photo.shape[1])
        )[..., None]  # [bh, bw, 1]
        out = self.photo[None].repeat(x.shape[0], 1, 1, 1)  # [N, H, W, 3]
        region = self.photo[top:bottom, left:right]  # [bh, bw, 3]
        for start in range(0, x.shape[0], PASTE_BATCH):
            batch = rearrange(x[start : start + PASTE_BATCH].to(self.photo.device, torch.float32), "n h w c -> n c h w")
            batch = F.interpolate(
                batch, size=(bottom - top, right - left), mode="bilinear", align_corners=False, antialias=True
            ).clamp(0, 1)  # [n, 3, bh, bw]
            blended = region + (rearrange(batch, "n c h w -> n h w c") - region) * weight  # [n, bh, bw, 3]
            out[start : start + PASTE_BATCH, top:bottom, left:right] = blended
            if progress is not None:
                progress(min(start + PASTE_BATCH, x.shape[0]))
        return out


def _distances(size: int, near: bool, far: bool) -> torch.Tensor:
    """Pixel centres' distance [size] to the nearer feathered end of a row of `size` pixels (inf: none)."""
    centres, none = torch.arange(size, dtype=torch.float32) + 0.5, torch.full((size,), float("inf"))
    return torch.minimum(centres if near else none, size - centres if far else none)


def _feather(height: int, width: int, inner: tuple[bool, bool, bool, bool]) -> torch.Tensor:
    """Blend weight [height, width]: the pixel centre's distance to the nearest inner edge (top, bottom,
    left, right flags), divided by the ramp width FEATHER * min(height, width), clipped to 0..1."""
    ramp = max(FEATHER * min(height, width), 1.0)
    dist_y, dist_x = _distances(height, *inner[:2]), _distances(width, *inner[2:])
    return (torch.minimum(dist_y[:, None], dist_x[None, :]) / ramp).clamp(0, 1)


def frame_portrait(image, height: int, width: int, policy="face", face_ratio: float = FACE_RATIO) -> Framing:
    """Frame a photo for a model of `height` x `width` pixels.

    image: [H, W, 3] float 0..1 (or anything media.normalise.prepare_image accepts), any size.
    policy: "face": detect faces (BlazeFace), take the largest, frame it like FlashHead: `face_ratio`
    times its width wide, the model's aspect ratio, ABOVE_FACE of the height above its centre, shifted
    inside the photo (shrunk to the largest such region that fits where the photo is too small).
    Without a face it logs a warning (logger "rap_core") and falls back to "centre". "centre": the
    photo scaled to cover the model's size, centre-cropped (FlashHead's default). (top, bottom, left,
    right): the region around that box in pixels, widened to the model's aspect, shifted inside the photo.
    """
    photo = rgb_image(image)  # [H, W, 3]
    for name, size in (("height", height), ("width", width)):
        if not float(size).is_integer() or size < 1:
            raise RAPInputError(f"The model's frame {name} must be a positive whole number of pixels; got {size}.")
    if not face_ratio > 0:
        raise RAPInputError(f"The face ratio (framed width over face width) must be positive; got {face_ratio}.")
    height, width = int(height), int(width)
    photo_h, photo_w, _ = photo.shape
    aspect = height / width
    if isinstance(policy, str) and policy not in POLICIES:
        raise RAPInputError(f"{POLICY_HELP} got {policy!r}.")
    if not isinstance(policy, str):
        return Framing(photo, height, width, _explicit_box(policy, photo_h, photo_w, aspect), None)
    if policy == "face" and (faces := detect_faces(rearrange(photo, "h w c -> c h w"))):
        x0, y0, x1, y1 = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).box.tolist()
        face = (max(y0, 0.0), min(y1, float(photo_h)), max(x0, 0.0), min(x1, float(photo_w)))
        box = _region_around((y0 + y1) / 2, ABOVE_FACE, (x0 + x1) / 2, face_ratio * (x1 - x0), aspect, photo_h, photo_w)
        return Framing(photo, height, width, box, face)
    if policy == "face":
        logging.getLogger("rap_core").warning(
            f"No face found in the {photo_w}x{photo_h} photo; falling back to the 'centre' framing (the photo's "
            f"centre). Give a photo with a clearly visible face, or pass a box (top, bottom, left, right)."
        )
    return Framing(photo, height, width, _centre_box(photo_h, photo_w, height, width), None, whole=True)


def frame_for(config: RAPConfig, image, policy=None) -> Framing:
    """Frame a photo for a preset's model: its size and face ratio, and `policy` ("face", "centre", a box)
    or None for the preset's own framing (RAPConfig.framing)."""
    return frame_portrait(
        image, config.height, config.width, config.framing if policy is None else policy, config.face_ratio
    )
