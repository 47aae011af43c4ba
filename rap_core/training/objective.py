"""RAP's training objective (DESIGN.md §2, the paper's §5.5-5.6).

- Static-dynamic windows: with probability beta a training window of K latent frames starts at
  the clip's first latent frame (the "static" one: a causal VAE codes the first video frame
  alone), otherwise at a latent inside the motion, where every latent codes 8 frames. The two
  cases are what inference meets: the first chunk starts from the still portrait, later chunks
  start mid-motion.
- Flow matching: x_t = (1 - t) x0 + t noise, target velocity v = noise - x0 (the samplers'
  convention and the same `noised` and `shifted`, sampling/schedule.py), t drawn uniformly and
  shifted like the inference schedule.
- Loss = MSE(v) + face_weight * face-masked MSE(v) + motion_weight * MSE of the velocities'
  differences between consecutive latent frames (temporal consistency).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import RAPInputError
from ..sampling.schedule import shifted


def sample_window(num_latents: int, window: int, beta: float, generator: torch.Generator) -> int:
    """First latent frame of a `window`-latent training window in a clip of `num_latents`:
    0 with probability `beta` (static start), else uniform in 1 .. num_latents - window."""
    if num_latents < window:
        raise RAPInputError(
            f"A clip of {num_latents} latent frames cannot hold a {window}-frame training window; "
            "make longer clips or a shorter window."
        )
    if num_latents == window or torch.rand((), generator=generator) < beta:
        return 0
    return int(torch.randint(1, num_latents - window + 1, (), generator=generator))


def window_frames(start_latent: int, window: int, stride: int) -> tuple[int, int]:
    """Video frames [first, end) whose audio drives latents [start, start + window): a window
    starting at latent s >= 1 takes the last frame of latent s's 8-frame group as its single
    first-latent frame, as a continued chunk does at inference (timing.overlap_frames)."""
    first = stride * start_latent
    return first, first + 1 + stride * (window - 1)


def sample_timesteps(batch: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """t in (0, 1) per sample [B]: uniform, then shifted like inference's schedule."""
    u = torch.rand(batch, generator=generator).clamp(1e-4, 1 - 1e-4)
    return shifted(u, shift)


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor
    flow: torch.Tensor
    face: torch.Tensor
    motion: torch.Tensor
    lip: torch.Tensor


def _masked_mean(error: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """error [B, C, F, h, w], mask [B, h, w] in 0..1 -> the mean error inside the mask."""
    weights = mask.float()[:, None, None]  # [B, 1, 1, h, w]
    return (error * weights).sum() / (weights.sum() * error.shape[1] * error.shape[2]).clamp(min=1.0)


def rap_loss(
    v: torch.Tensor,
    target: torch.Tensor,
    face_mask: torch.Tensor,
    face_weight: float = 0.5,
    motion_weight: float = 0.5,
    mouth_mask: torch.Tensor | None = None,
    lip_weight: float = 0.0,
) -> LossParts:
    """v, target [B, C, F, h, w]; face_mask, mouth_mask [B, h, w] in 0..1 (latent grid) -> the loss and
    its parts. The lip term (FantasyTalking's lip-focused second stage) needs mouth_mask."""
    error = (v.float() - target.float()) ** 2  # [B, C, F, h, w]
    flow = error.mean()
    face = _masked_mean(error, face_mask)
    if v.shape[2] > 1:
        motion = ((v.float().diff(dim=2) - target.float().diff(dim=2)) ** 2).mean()
    else:
        motion = flow.new_zeros(())
    lip = _masked_mean(error, mouth_mask) if mouth_mask is not None else flow.new_zeros(())
    return LossParts(flow + face_weight * face + motion_weight * motion + lip_weight * lip, flow, face, motion, lip)
