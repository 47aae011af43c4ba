"""Colour matching in CIE Lab, as FlashHead applies to each decoded chunk before its last frames
are re-encoded as the next chunk's motion frames: it keeps colour drift from building up.

Conversions are sRGB (gamma 2.4 with the linear toe) <-> linear RGB <-> XYZ <-> Lab under the
D65 white point, channels last, with FlashHead's constants and clamps.
"""

from __future__ import annotations

import torch

from ..errors import RAPInputError

_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_XYZ_TO_RGB = (
    (3.2404542, -1.5371385, -0.4985314),
    (-0.9692660, 1.8760108, 0.0415560),
    (0.0556434, -0.2040259, 1.0572252),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)
_EPSILON, _KAPPA = 0.008856, 903.3  # CIE Lab: cube root above EPSILON, linear (KAPPA) below


def _const(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [..., 3] in 0..1 -> Lab [..., 3]: L in 0..100, a and b about -128..127.

    XYZ relative to the white point is clamped to [1e-8, 1] before the cube root.
    """
    linear = torch.where(rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = (linear @ _const(_RGB_TO_XYZ, rgb).T / _const(_D65_WHITE, rgb)).clamp(1e-8, 1.0)  # [..., 3]
    f = torch.where(xyz > _EPSILON, xyz ** (1 / 3), (_KAPPA * xyz + 16) / 116)  # [..., 3]
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab [..., 3] -> sRGB [..., 3] clamped to 0..1 (the inverse of `rgb_to_lab` inside the gamut)."""
    lightness, a, b = lab.unbind(-1)
    fy = (lightness + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-1)  # [..., 3]
    xyz = torch.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA)
    xyz[..., 1] = torch.where(lightness > _KAPPA * _EPSILON, fy**3, lightness / _KAPPA)  # Y from L directly
    linear = xyz * _const(_D65_WHITE, lab) @ _const(_XYZ_TO_RGB, lab).T  # [..., 3]
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def match_colors(video: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Match every frame's Lab mean and (population) standard deviation to the reference image's.

    video [B, 3, T, H, W] in -1..1; reference [B or 1, 3, 1, H', W'] in -1..1 (only its per-channel
    statistics are used, so its size may differ). Each frame's L, a and b channels are standardised
    and rescaled to the reference's, converted back to sRGB (clamped to 0..1), then blended with the
    original frame: `strength` 0 returns `video` itself, 1 the fully matched frames.
    Returns [B, 3, T, H, W] in video's dtype; the arithmetic runs in at least float32.
    """
    if not 0.0 <= strength <= 1.0:
        raise RAPInputError(f"Colour correction strength must be in [0, 1] (got {strength}); 0 turns it off.")
    if video.ndim != 5 or video.shape[1] != 3:
        raise RAPInputError(f"match_colors expects an RGB video [B, 3, T, H, W]; got shape {tuple(video.shape)}.")
    if reference.ndim != 5 or reference.shape[1:3] != (3, 1) or reference.shape[0] not in (1, video.shape[0]):
        raise RAPInputError(
            f"match_colors expects one RGB reference image [{video.shape[0]} or 1, 3, 1, H, W] for a video "
            f"of batch {video.shape[0]}; got shape {tuple(reference.shape)}."
        )
    if strength == 0.0:
        return video
    dtype = torch.promote_types(video.dtype, torch.float32)
    source = (video.to(dtype).permute(0, 2, 3, 4, 1) + 1) / 2  # [B, T, H, W, 3] in 0..1
    target = (reference.to(video.device, dtype).permute(0, 2, 3, 4, 1) + 1) / 2  # [B|1, 1, H', W', 3]
    lab, target_lab = rgb_to_lab(source), rgb_to_lab(target)
    mean, std = lab.mean((2, 3), keepdim=True), lab.std((2, 3), correction=0, keepdim=True)  # [B, T, 1, 1, 3]
    target_mean = target_lab.mean((2, 3), keepdim=True)  # [B|1, 1, 1, 1, 3]
    target_std = target_lab.std((2, 3), correction=0, keepdim=True)  # [B|1, 1, 1, 1, 3]
    std = torch.where(std < 1e-8, torch.ones_like(std), std)  # flat channels are only shifted
    matched = lab_to_rgb((lab - mean) * (target_std / std) + target_mean)  # [B, T, H, W, 3] in 0..1
    blended = (1 - strength) * source + strength * matched
    return (blended * 2 - 1).permute(0, 4, 1, 2, 3).contiguous().to(video.dtype)  # [B, 3, T, H, W]
