"""Face-focused identity attention (FantasyTalking's idea, our layout): the VAE latent of a face
crop of the portrait becomes a few tokens, and after every DiT block the video tokens attend to
them through a cross-attention whose output projection starts at zero, so a DiT that gains the
branch computes exactly what it did without it.

FantasyTalking encodes the crop with ArcFace and a Q-Former; here the crop goes through the
model's own VAE, so the branch needs no other network.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..config import DiTConfig
from .attention import AttentionFn, IdentityAttention


class FaceIdentity(nn.Module):
    """The branch: face-latent embedding and one IdentityAttention per block (keys embed, attn.i)."""

    def __init__(self, cfg: DiTConfig, attention: AttentionFn, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.embed = operations.Linear(cfg.out_channels, cfg.dim, **factory)
        self.norm = operations.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False, **factory)
        self.attn = nn.ModuleList(
            IdentityAttention(cfg.dim, cfg.num_heads, cfg.eps, attention, operations, **factory)
            for _ in range(cfg.num_layers)
        )

    def tokens(self, face: torch.Tensor) -> torch.Tensor:
        """face latent [B, C, 1, h, w] (the VAE's latent of the face crop) -> face tokens [B, h*w, D]."""
        return self.embed(rearrange(face, "b c f h w -> b (f h w) c"))

    def attend(self, index: int, x: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Block `index`'s identity residual: x [B, S, D], faces [B, N, D] -> [B, S, D]."""
        return self.attn[index](self.norm(x), faces)
