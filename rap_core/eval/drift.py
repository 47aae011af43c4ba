"""Drift: how far generated frames wander from the reference portrait over time, and how much more
they have wandered at the end of a long video than at its start."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from ..errors import RAPInputError
from .frames import as_video
from .motion import follow

_BATCH = 64  # frames compared at a time, so a minute of video never needs a second copy in memory
DENOMINATOR_FLOOR = 1 / 255  # one 8-bit grey level: smaller errors are quantisation, not drift


@dataclass(frozen=True)
class Drift:
    """Per-frame error against the reference, in 0..1 colour units.

    background [T]: mean absolute error over the static background pixels (all channels).
    identity [T]: error of the identity colours, the mean over the face skin and the background of
    the mean absolute channel difference between the region's median colour and the reference's.
    """

    background: torch.Tensor
    identity: torch.Tensor


def _mask(mask, shape: tuple[int, int], name: str) -> torch.Tensor:
    region = torch.as_tensor(mask)
    if region.dtype != torch.bool or tuple(region.shape) != shape:
        raise RAPInputError(
            f"The {name} mask must be a boolean [H, W] = {list(shape)} mask like the frames; "
            f"got dtype {region.dtype} and shape {tuple(region.shape)}."
        )
    if not region.any():
        raise RAPInputError(f"The {name} mask is empty; it must mark at least one pixel.")
    return region


def drift_curve(frames, reference, background, face_skin, head: torch.Tensor | None = None) -> Drift:
    """frames [T, H, W, 3], reference [H, W, 3] (floats 0..1), background and face_skin [H, W] bool
    (of the reference), head [T, 2] (x, y) pixels or None -> Drift(background [T], identity [T]).

    The background error compares pixel by pixel, so it sees any change of the static scenery.
    The identity error compares each region's median colour only, so a head that sways by a pixel
    (moving skin over the mask's edge) does not count as drift while a change of skin or backdrop
    colour does. Given the head's offset in every frame (eval.motion.head_offsets), the skin mask
    follows it (eval.motion.follow).
    """
    video = as_video(frames)
    _, height, width, _ = video.shape
    target = torch.as_tensor(reference)
    if tuple(target.shape) != (height, width, 3) or not target.is_floating_point():
        raise RAPInputError(
            f"The reference must be a float RGB image [H, W, 3] = [{height}, {width}, 3] like the frames; "
            f"got dtype {target.dtype} and shape {tuple(target.shape)}."
        )
    target = target.to(torch.float32)
    scenery = _mask(background, (height, width), "background")
    skin = _mask(face_skin, (height, width), "face_skin")
    if head is not None and tuple(head.shape) != (video.shape[0], 2):
        raise RAPInputError(f"The head offsets must be [T, 2] = [{video.shape[0]}, 2], got {tuple(head.shape)}.")
    target_scenery, target_skin = target[scenery], target[skin]  # [N, 3], [M, 3]
    scenery_colour, skin_colour = target_scenery.median(dim=0).values, target_skin.median(dim=0).values  # [3]
    background_error, identity_error = [], []
    for start, batch in zip(range(0, video.shape[0], _BATCH), video.split(_BATCH)):
        pixels = batch[:, scenery]  # [t, N, 3]
        background_error.append((pixels - target_scenery).abs().mean(dim=(1, 2)))
        scenery_shift = (pixels.median(dim=1).values - scenery_colour).abs().mean(dim=1)  # [t]
        if head is None:
            skin_pixels = batch[:, skin]  # [t, M, 3]
        else:
            moved = follow(skin, head[start : start + batch.shape[0]])  # [t, H, W]
            skin_pixels = rearrange(batch.masked_fill(~moved[..., None], torch.nan), "t h w c -> t (h w) c")
        skin_shift = (skin_pixels.nanmedian(dim=1).values - skin_colour).abs().mean(dim=1)  # [t]
        identity_error.append((scenery_shift + skin_shift) / 2)
    return Drift(torch.cat(background_error), torch.cat(identity_error))


def drift_ratio(curve, fps: int = 25, window_s: float = 5.0, floor: float = DENOMINATOR_FLOOR) -> float:
    """curve [T] -> mean of its last `window_s` seconds / mean of its first `window_s` seconds.

    The first window's mean is raised to at least `floor` (default one 8-bit grey level, 1/255),
    so a start that matches the reference almost perfectly does not turn a tiny later error into a
    large ratio. The two windows must not overlap: the curve needs at least 2 * window_s seconds.
    """
    values = torch.as_tensor(curve).to(torch.float64)
    window = round(window_s * fps)
    if values.ndim != 1 or window < 1:
        raise RAPInputError(
            f"drift_ratio needs a curve [T] and a window of at least one frame; got shape "
            f"{tuple(values.shape)} and {window_s} s at {fps} fps."
        )
    if values.numel() < 2 * window:
        raise RAPInputError(
            f"The curve has {values.numel()} frames; comparing its first and last {window_s} s at {fps} fps "
            f"needs at least {2 * window}. Generate a longer video or shorten window_s."
        )
    if not torch.isfinite(values).all():
        raise RAPInputError("The drift curve contains NaN or infinite values; measure it again from valid frames.")
    first, last = values[:window].mean(), values[-window:].mean()
    return float(last / first.clamp(min=floor))
