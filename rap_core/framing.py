"""Portrait framing: which square of a photo the model sees, and how its frames go back into the photo.

FlashHead frames a portrait around the face: the face box scaled by FRAME_SCALE about its centre,
made square, shifted to lie inside the photo. `frame_portrait` finds the face with the shipped
BlazeFace detector (face_detection.py), cuts that square out at the model's size (`crop`) and
pastes generated frames back over the photo with a feathered seam (`paste`), so any photo, of any
size, can be animated in place.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .errors import RAPInputError
from .media import cover_and_crop, prepare_image, rgb_image
from .face_detection import detect_faces

FRAME_SCALE = 2.0  # FlashHead: the square the model sees is the face box scaled by this about its centre
FEATHER = 1 / 16  # seam ramp width as a fraction of the pasted region's shorter side
POLICY_HELP = "The framing policy must be 'face', 'centre' or a box (top, bottom, left, right) in photo pixels;"
Box = tuple[int, int, int, int]  # (top, bottom, left, right) in photo pixels, bottom/right exclusive


def _square_around(centre_y: float, centre_x: float, side: float, height: int, width: int) -> Box:
    """The square of `side` pixels centred at (centre_y, centre_x), shrunk to fit the photo if larger,
    then shifted inside it (pixels rounded; at least 8, the smallest image prepare_image takes)."""
    side = round(min(max(side, 8.0), height, width))
    top = round(min(max(centre_y - side / 2, 0.0), height - side))
    left = round(min(max(centre_x - side / 2, 0.0), width - side))
    return top, top + side, left, left + side


def _explicit_box(policy, height: int, width: int) -> Box:
    """A (top, bottom, left, right) policy in pixels -> the square the model sees: widened around its centre."""
    try:
        top, bottom, left, right = (float(value) for value in policy)
    except (TypeError, ValueError):
        raise RAPInputError(f"{POLICY_HELP} got {policy!r}.") from None
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise RAPInputError(
            f"The framing box (top, bottom, left, right) = {tuple(policy)} does not lie inside the {width}x{height} "
            f"photo: need 0 <= top < bottom <= {height} and 0 <= left < right <= {width}."
        )
    side = max(bottom - top, right - left)
    return _square_around((top + bottom) / 2, (left + right) / 2, side, height, width)


@dataclass(frozen=True, eq=False)
class Framing:
    """A photo framed for the model. photo: [H, W, 3] float32 0..1 (the input, as RGB); height, width:
    the model's frame size; box: (top, bottom, left, right) in photo pixels, the square the model sees;
    face: the detected face box (top, bottom, left, right) in photo pixels (clipped to the photo), or None."""

    photo: torch.Tensor = field(repr=False)
    height: int
    width: int
    box: Box
    face: tuple[float, float, float, float] | None

    def crop(self) -> torch.Tensor:
        """The model-size portrait [height, width, 3] float32 0..1: the box region through
        media.prepare_image (scaled to cover height x width, centre-cropped; a square box and a square
        model size need no crop), mapped from its [-1, 1] back to 0..1."""
        top, bottom, left, right = self.box
        x = prepare_image(self.photo[top:bottom, left:right], self.height, self.width)  # [3, height, width]
        return rearrange((x + 1) / 2, "c h w -> h w c").contiguous()

    def shown(self) -> Box:
        """The part of the box the frames show (top, bottom, left, right): the whole box for a square model
        size, else its centred height:width part, as crop() cuts it."""
        top, bottom, left, right = self.box
        side = bottom - top
        (cover_h, cover_w), (off_y, off_x) = cover_and_crop(side, side, self.height, self.width)
        y0, x0 = top + round(off_y * side / cover_h), left + round(off_x * side / cover_w)
        y1, x1 = y0 + max(round(self.height * side / cover_h), 1), x0 + max(round(self.width * side / cover_w), 1)
        return y0, min(y1, bottom), x0, min(x1, right)

    def paste(self, frames) -> torch.Tensor:
        """frames [N, h, w, 3] float 0..1 (the model's output; torch or numpy) -> [N, H, W, 3] float32 0..1:
        each frame resized (bilinear, antialiased) onto the shown part of the box and blended over the
        photo. The blend weight ramps linearly from 0 at the region's edge to 1 at FEATHER of its shorter
        side inside it, on edges that lie inside the photo (an edge on the photo's border is not feathered);
        every pixel outside the region is the photo's, exactly."""
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
        top, bottom, left, right = self.shown()
        frames = rearrange(x.to(self.photo.device, torch.float32), "n h w c -> n c h w")
        frames = F.interpolate(frames, size=(bottom - top, right - left), mode="bilinear", align_corners=False,
                               antialias=True).clamp(0, 1)  # [N, 3, rh, rw]
        weight = _feather(bottom - top, right - left, (top > 0, bottom < self.photo.shape[0],
                                                       left > 0, right < self.photo.shape[1])).to(frames)  # [rh, rw]
        out = self.photo[None].repeat(x.shape[0], 1, 1, 1)  # [N, H, W, 3]
        region = out[:, top:bottom, left:right]  # [N, rh, rw, 3]
        out[:, top:bottom, left:right] = region + (rearrange(frames, "n c h w -> n h w c") - region) * weight[..., None]
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


def frame_portrait(image, height: int, width: int, policy="face") -> Framing:
    """Frame a photo for a model of `height` x `width` pixels.

    image: [H, W, 3] float 0..1 (or anything media.prepare_image accepts), any size.
    policy: "face": detect faces (BlazeFace), take the largest, frame it like FlashHead (its box
    scaled by FRAME_SCALE about its centre, made square, shifted inside the photo; shrunk to the largest
    square that fits where the photo is too small). Without a face it warns (UserWarning, via
    warnings.warn) and falls back to "centre". "centre": the largest centred square.
    (top, bottom, left, right): the square the model sees, around that box (widened to a square, shifted
    inside the photo), in pixels.
    """
    photo = rgb_image(image)  # [H, W, 3]
    for name, size in (("height", height), ("width", width)):
        if not float(size).is_integer() or size < 1:
            raise RAPInputError(f"The model's frame {name} must be a positive whole number of pixels; got {size}.")
    photo_h, photo_w, _ = photo.shape
    face = None
    if isinstance(policy, str) and policy not in ("face", "centre"):
        raise RAPInputError(f"{POLICY_HELP} got {policy!r}.")
    if not isinstance(policy, str):
        box = _explicit_box(policy, photo_h, photo_w)
    elif policy == "face" and (faces := detect_faces(rearrange(photo, "h w c -> c h w"))):
        x0, y0, x1, y1 = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).box.tolist()
        face = (max(y0, 0.0), min(y1, float(photo_h)), max(x0, 0.0), min(x1, float(photo_w)))
        side = FRAME_SCALE * max(y1 - y0, x1 - x0)
        box = _square_around((y0 + y1) / 2, (x0 + x1) / 2, side, photo_h, photo_w)
    else:
        if policy == "face":
            warnings.warn(
                f"No face found in the {photo_w}x{photo_h} photo; falling back to the 'centre' framing (the largest "
                f"centred square). Give a photo with a clearly visible face, or pass a box (top, bottom, left, right).",
                stacklevel=2,
            )
        box = _square_around(photo_h / 2, photo_w / 2, min(photo_h, photo_w), photo_h, photo_w)
    return Framing(photo, int(height), int(width), box, face)
