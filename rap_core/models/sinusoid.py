"""The timestep sinusoid, in its own module because two embeddings share it: the DiT's timestep
embedding and the intensity embedding (which puts each control on the timestep scale), and the
intensity module cannot import the DiT that imports it.
"""

from __future__ import annotations

import torch


def timestep_sinusoid(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """timestep [B] -> [B, dim] float32, cat(cos, sin) of t * 10000^(-i/(dim/2)) (Wan's convention)."""
    half = dim // 2
    freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float32, device=timestep.device) / half)  # [dim/2]
    angles = timestep.float()[:, None] * freqs  # [B, dim/2]
    return torch.cat([angles.cos(), angles.sin()], dim=1)
