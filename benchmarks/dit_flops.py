"""Model FLOPs of one DiT forward, counted from the architecture (rap_core/models/dit.py).

Matrix products only, 2 FLOPs per multiply-add (the convention of model-FLOPs utilisation);
norms, activations, RoPE and the softmax are not counted. For a batch of B and S video tokens
(latent [B, C, F, h, w] in patches of (pt, ph, pw): S = F/pt * h/ph * w/pw), width D, FFN width
Dff, audio tokens per latent frame M and N = F/pt * M audio tokens per chunk:

    patch embedding   2 S (C_in pt ph pw) D
    time embedding    2 (freq D + D D + 6 D D)                  (per sample, not per token)
    per block         2 S D D * 4        self-attention q, k, v, o
                      4 S S D            self-attention scores and weighted values
                      2 S D D * 2        audio attention q, o
                      2 N D D * 2        audio attention k, v (on the audio tokens)
                      4 S M D            window branch (alpha > 0): each frame's tokens x its M tokens
                      4 S N D            full branch (alpha < 1): every token x all N tokens
                      2 S D Dff * 2      FFN
    head              2 S D (C_out pt ph pw)

all times B. `tests/test_benchmark_scripts.py` checks this count against torch's FLOP counter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rap_core.config import DiTConfig


def dit_forward_flops(
    dit: DiTConfig, alphas: Sequence[float], batch: int, latent_grid: tuple[int, int, int], context_tokens: int
) -> int:
    """FLOPs of one forward on latents [batch, C, *latent_grid] with `context_tokens` audio tokens per
    latent frame; alphas[i] is block i's window weight (AudioAttention.alpha when it runs)."""
    pt, ph, pw = dit.patch_size
    frames, height, width = latent_grid
    s = (frames // pt) * (height // ph) * (width // pw)
    n = (frames // pt) * context_tokens
    d, patch = dit.dim, math.prod(dit.patch_size)
    embed = 2 * s * dit.in_channels * patch * d + 2 * (dit.freq_dim * d + d * d + 6 * d * d)
    block = 2 * s * d * d * 4 + 4 * s * s * d + 2 * s * d * d * 2 + 2 * n * d * d * 2 + 2 * s * d * dit.ffn_dim * 2
    audio = sum((4 * s * context_tokens * d if a > 0.0 else 0) + (4 * s * n * d if a < 1.0 else 0) for a in alphas)
    head = 2 * s * d * dit.out_channels * patch
    return batch * (embed + len(alphas) * block + audio + head)
