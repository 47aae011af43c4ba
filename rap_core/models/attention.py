"""Attention backends, 3D RoPE, and the DiT's self-attention and hybrid audio attention.

Every backend maps q, k, v [B, H, S, d] (keys/values [B, H, N, d]) to [B, H, S, d], unmasked:
"sdpa" (torch, default), "math" (float32 reference), "flash_attn" and "sage" (optional packages).

Hybrid audio attention (RAP §3): block i of L adds alpha(i)*window + (1 - alpha(i))*full to the
residual, where `window` lets each latent frame's tokens attend only to that frame's M audio
tokens and `full` lets every token attend to all F*M tokens of the chunk, with

    alpha(i) = clamp(alpha_delta + alpha_w * i / (L - 1), 0, 1)      (i / (L - 1) := 0 when L == 1)

so alpha_w=1, alpha_delta=0 ramps from full attention in block 0 to window attention in the last
block (the paper's best setting). mode="window" is alpha = 1 in every block (FlashHead exactly),
mode="full" is alpha = 0 (plain cross-attention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..config import AudioMode
from ..errors import RAPInputError
from .silent_start import start_silent

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [B, H, S, d], k/v [B, H, N, d] -> [B, H, S, d] with torch's fused kernels."""
    return F.scaled_dot_product_attention(q, k, v)


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference softmax(q k^T / sqrt(d)) v computed in float32; [B, H, S, d] -> [B, H, S, d]."""
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, H, S, N]
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def _to_half_precision(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The optional kernels take half precision only: float32 inputs run in bfloat16."""
    dtype = torch.bfloat16 if q.dtype == torch.float32 else q.dtype
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _flash_attention(flash_attn_func) -> AttentionFn:
    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        hq, hk, hv = (rearrange(t, "b h s d -> b s h d") for t in _to_half_precision(q, k, v))  # [B, S, H, d]
        out = flash_attn_func(hq, hk, hv)  # [B, S, H, d]
        return rearrange(out, "b s h d -> b h s d").to(q.dtype)  # [B, H, S, d]

    return attention


def _sage_attention(sageattn) -> AttentionFn:
    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return sageattn(*_to_half_precision(q, k, v), tensor_layout="HND", is_causal=False).to(q.dtype)

    return attention


ATTENTION_BACKENDS = ("sdpa", "math", "flash_attn", "sage")


def resolve_attention(name: str) -> AttentionFn:
    """Return the attention function called `name`; optional backends must be importable."""
    if name == "sdpa":
        return sdpa_attention
    if name == "math":
        return math_attention
    if name == "flash_attn":
        try:
            from flash_attn import flash_attn_func
        except ImportError as error:
            raise RAPInputError(
                f"Attention backend 'flash_attn' is not available ({error}). Install it with "
                "`pip install flash-attn` (CUDA GPUs only) or choose 'sdpa'."
            ) from error
        return _flash_attention(flash_attn_func)
    if name == "sage":
        try:
            from sageattention import sageattn
        except ImportError as error:
            raise RAPInputError(
                f"Attention backend 'sage' is not available ({error}). Install it with "
                "`pip install sageattention` (CUDA GPUs only) or choose 'sdpa'."
            ) from error
        return _sage_attention(sageattn)
    raise RAPInputError(f"Unknown attention backend '{name}'. Choose one of: {', '.join(ATTENTION_BACKENDS)}.")


def audio_alpha(mode: AudioMode, block: int, num_blocks: int, alpha_w: float, alpha_delta: float) -> float:
    """Window weight of block `block` of `num_blocks` (formula in the module docstring)."""
    if mode == "window":
        return 1.0
    if mode == "full":
        return 0.0
    if mode == "hybrid":
        depth = block / (num_blocks - 1) if num_blocks > 1 else 0.0
        return min(max(alpha_delta + alpha_w * depth, 0.0), 1.0)
    raise RAPInputError(f"Unknown audio attention mode '{mode}'. Choose one of: {', '.join(get_args(AudioMode))}.")


def rope_tables(head_dim: int, grid: tuple[int, int, int], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """3D RoPE (Wan 2.1) for a (f, h, w) token grid -> cos, sin [f*h*w, head_dim/2] float32 on the CPU.

    Each head's head_dim/2 rotation pairs split over (time, height, width) as
    (head_dim - 4*(head_dim//6), 2*(head_dim//6), 2*(head_dim//6)) / 2; positions are 0-based within
    the chunk; axis pair j of an axis of width d turns at theta^(-2j/d). Angles are taken in float64.
    """
    side = 2 * (head_dim // 6)
    angles = []
    for length, width in zip(grid, (head_dim - 2 * side, side, side)):
        freqs = theta ** (-torch.arange(0, width, 2, dtype=torch.float64) / width)  # [width/2]
        angles.append(torch.outer(torch.arange(length, dtype=torch.float64), freqs))  # [length, width/2]
    f, h, w = grid
    table = torch.cat(
        [
            angles[0][:, None, None].expand(f, h, w, -1),
            angles[1][None, :, None].expand(f, h, w, -1),
            angles[2][None, None, :].expand(f, h, w, -1),
        ],
        dim=-1,
    )  # [f, h, w, head_dim/2]
    table = rearrange(table, "f h w d -> (f h w) d")  # [S, head_dim/2]
    return table.cos().float(), table.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2j], x[2j+1]) of x [B, H, S, d] by cos/sin [S, d/2], in float32."""
    x1, x2 = rearrange(x.float(), "b h s (d two) -> two b h s d", two=2)  # 2 x [B, H, S, d/2]
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # [B, H, S, d/2, 2]
    return rearrange(rotated, "b h s d two -> b h s (d two)").to(x.dtype)  # [B, H, S, d]


class RMSNorm(nn.Module):
    """RMS norm over the last dim, computed in float32 then cast back before the weight (FlashHead)."""

    def __init__(self, dim: int, eps: float, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return normed * self.weight.to(dtype=x.dtype, device=x.device)


class _Attention(nn.Module):
    """q, k, v, o projections with QK RMS norm across all heads (keys q, k, v, o, norm_q, norm_k)."""

    def __init__(
        self, dim: int, num_heads: int, eps: float, attention: AttentionFn, operations=nn, device=None, dtype=None
    ):
        super().__init__()
        self.num_heads, self.attention = num_heads, attention
        factory = dict(device=device, dtype=dtype)
        self.q = operations.Linear(dim, dim, **factory)
        self.k = operations.Linear(dim, dim, **factory)
        self.v = operations.Linear(dim, dim, **factory)
        self.o = operations.Linear(dim, dim, **factory)
        self.norm_q = RMSNorm(dim, eps, **factory)
        self.norm_k = RMSNorm(dim, eps, **factory)


class SelfAttention(_Attention):
    """Bidirectional self-attention over the chunk's tokens with 3D RoPE on q and k."""

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [B, S, D], rope = (cos, sin) [S, head_dim/2] -> [B, S, D]."""
        heads = self.num_heads
        q = rearrange(self.norm_q(self.q(x)), "b s (h d) -> b h s d", h=heads)  # [B, H, S, d]
        k = rearrange(self.norm_k(self.k(x)), "b s (h d) -> b h s d", h=heads)  # [B, H, S, d]
        v = rearrange(self.v(x), "b s (h d) -> b h s d", h=heads)  # [B, H, S, d]
        out = self.attention(apply_rope(q, *rope), apply_rope(k, *rope), v)  # [B, H, S, d]
        return self.o(rearrange(out, "b h s d -> b s (h d)"))  # [B, S, D]


class AudioAttention(_Attention):
    """Cross-attention from video tokens to audio tokens, window/full/hybrid (no RoPE, no mask).

    `alpha` is this block's window weight: 1 = window (FlashHead), 0 = full, between = RAP hybrid.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        eps: float,
        attention: AttentionFn,
        alpha: float = 1.0,
        operations=nn,
        device=None,
        dtype=None,
    ):
        super().__init__(dim, num_heads, eps, attention, operations, device=device, dtype=dtype)
        self.alpha = alpha

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x [B, F*S, D] (frame-major tokens), audio [B, F, M, D] -> [B, F*S, D]."""
        heads, frames, alpha = self.num_heads, audio.shape[1], self.alpha
        q = self.norm_q(self.q(x))  # [B, F*S, D]
        k = self.norm_k(self.k(audio))  # [B, F, M, D]
        v = self.v(audio)  # [B, F, M, D]
        # q, k, v are shared by both branches; the blend happens before `o`, which is exact because
        # `o` is affine and the weights alpha and 1 - alpha sum to 1. alpha 1 or 0 runs one branch
        # and blends nothing; between, one lerp: full + alpha * (window - full).
        window = full = None
        if alpha > 0.0:
            window = self.attention(
                rearrange(q, "b (f s) (h d) -> (b f) h s d", f=frames, h=heads),  # [B*F, H, S, d]
                rearrange(k, "b f m (h d) -> (b f) h m d", h=heads),  # [B*F, H, M, d]
                rearrange(v, "b f m (h d) -> (b f) h m d", h=heads),  # [B*F, H, M, d]
            )
            window = rearrange(window, "(b f) h s d -> b (f s) (h d)", f=frames)  # [B, F*S, D]
        if alpha < 1.0:
            full = self.attention(
                rearrange(q, "b n (h d) -> b h n d", h=heads),  # [B, H, F*S, d]
                rearrange(k, "b f m (h d) -> b h (f m) d", h=heads),  # [B, H, F*M, d]
                rearrange(v, "b f m (h d) -> b h (f m) d", h=heads),  # [B, H, F*M, d]
            )
            full = rearrange(full, "b h n d -> b n (h d)")  # [B, F*S, D]
        if full is None:
            return self.o(window)
        if window is None:
            return self.o(full)
        return self.o(torch.lerp(full, window, alpha))


class IdentityAttention(_Attention):
    """Cross-attention from video tokens to face-identity tokens (no RoPE, no mask); `o` starts at
    zero, so the branch it belongs to (models/identity.py) starts silent."""

    def __init__(
        self, dim: int, num_heads: int, eps: float, attention: AttentionFn, operations=nn, device=None, dtype=None
    ):
        super().__init__(dim, num_heads, eps, attention, operations, device=device, dtype=dtype)
        start_silent(self.o)

    def forward(self, x: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """x [B, S, D], faces [B, N, D] -> [B, S, D]."""
        heads = self.num_heads
        q = rearrange(self.norm_q(self.q(x)), "b s (h d) -> b h s d", h=heads)  # [B, H, S, d]
        k = rearrange(self.norm_k(self.k(faces)), "b n (h d) -> b h n d", h=heads)  # [B, H, N, d]
        v = rearrange(self.v(faces), "b n (h d) -> b h n d", h=heads)  # [B, H, N, d]
        return self.o(rearrange(self.attention(q, k, v), "b h s d -> b s (h d)"))
