"""Motion-intensity modulation (FantasyTalking's idea, our layout): two controls in 0..1, the
expression (mouth) intensity and the head motion intensity, embedded and added to the DiT's
timestep embedding, so they act through every block's AdaLN modulation and the head's.

0.5 is the data set's median clip (training labels are percentiles, rap_core.training.data). The
last layer starts at zero: a DiT that gains this branch computes exactly what it did without it.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .silent_start import start_silent
from .sinusoid import timestep_sinusoid

NATURAL = (0.5, 0.5)  # (expression, head motion): the median training clip


class IntensityEmbedding(nn.Module):
    def __init__(self, freq_dim: int, dim: int, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(
            operations.Linear(freq_dim, dim, **factory), nn.SiLU(), operations.Linear(dim, dim, **factory)
        )
        start_silent(self.mlp[2])

    def forward(self, sinusoids: torch.Tensor) -> torch.Tensor:
        """sinusoids [B, freq_dim] (both controls' timestep-style sinusoids, concatenated) -> [B, D]."""
        return self.mlp(sinusoids)

    def embed(self, levels: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
        """levels [B, 2] (or [1, 2]; expression, head motion in 0..1; None: NATURAL), t the timestep
        embedding [B, D] -> the term to add to t, [B, D] in t's dtype. Each control goes on the timestep
        scale (0..1000) through the timestep sinusoid at half of freq_dim, so the two fill freq_dim."""
        controls = torch.tensor([NATURAL]) if levels is None else levels.reshape(-1, 2)
        controls = controls.to(t.device, torch.float32).expand(t.shape[0], 2)  # [B, 2]
        waves = timestep_sinusoid(controls.reshape(-1) * 1000, self.freq_dim // 2)  # [B*2, freq_dim/2]
        return self(rearrange(waves, "(b two) f -> b (two f)", two=2).to(t))  # [B, D]
