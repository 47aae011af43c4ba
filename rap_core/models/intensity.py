"""Motion-intensity modulation (FantasyTalking's idea, our layout): two controls in 0..1, the
expression (mouth) intensity and the head motion intensity, embedded and added to the DiT's
timestep embedding, so they act through every block's AdaLN modulation and the head's.

0.5 is the data set's median clip (training labels are percentiles, rap_core.training.data). The
last layer starts at zero: a DiT that gains this branch computes exactly what it did without it.
"""

from __future__ import annotations

import torch
from torch import nn

from .silent_start import start_silent

NATURAL = (0.5, 0.5)  # (expression, head motion): the median training clip


class IntensityEmbedding(nn.Module):
    def __init__(self, freq_dim: int, dim: int, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.mlp = nn.Sequential(
            operations.Linear(freq_dim, dim, **factory), nn.SiLU(), operations.Linear(dim, dim, **factory)
        )
        start_silent(self.mlp[2])

    def forward(self, sinusoids: torch.Tensor) -> torch.Tensor:
        """sinusoids [B, freq_dim] (both controls' timestep-style sinusoids, concatenated) -> [B, D]."""
        return self.mlp(sinusoids)
