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

    def __init__(self, dit_config: DiTConfig, attention: AttentionFn, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.embed = operations.Linear(dit_config.out_channels, dit_config.dim, **factory)
        self.norm = operations.LayerNorm(dit_config.dim, eps=dit_config.eps, elementwise_affine=False, **factory)
        self.attn = nn.ModuleList(
            IdentityAttention(dit_config.dim, dit_config.num_heads, dit_config.eps, attention, operations, **factory)
            for _ in range(dit_config.num_layers)
        )

    def tokens(self, face: torch.Tensor) -> torch.Tensor:
        """face latent [B, C, 1, h, w] (the VAE's latent of the face crop) -> face tokens [B, h*w, D]."""
        return self.embed(rearrange(face, "b c f h w -> b (f h w) c"))

    def context(self, face: torch.Tensor | None, video: torch.Tensor) -> torch.Tensor | None:
        """face latent [1 or B, C, 1, h, w] or None, video tokens [B, S, D] -> the face tokens every block
        attends to, [B, N, D] on video's device and dtype; None without a face (the branch then stays out)."""
        if face is None:
            return None
        return self.tokens(face.to(video.device, video.dtype)).expand(video.shape[0], -1, -1)  # [B, N, D]

    def attend(self, index: int, x: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Block `index`'s identity residual: x [B, S, D], faces [B, N, D] -> [B, S, D]."""
        return self.attn[index](self.norm(x), faces)
