"""The audio-driven DiT: Wan-2.1-1.3B layout over channel-concatenated (noisy, reference) latents.

Parameter names equal FlashHead-Lite's checkpoint keys minus its unused `text_embedding.*` and
`audio_emb.*`. Per block: AdaLN-modulated self-attention with 3D RoPE, ungated audio
cross-attention in Wan's text slot (`cross_attn`, after the affine `norm3`), AdaLN-modulated
tanh-GELU FFN. The head is modulated by the time embedding t (not the 6-way projection).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from ..config import DiTConfig, RAPConfig
from ..errors import RAPInputError
from .attention import AudioAttention, SelfAttention, audio_alpha, resolve_attention, rope_tables
from .audio_projection import AudioProjection
from .identity import FaceIdentity
from .intensity import NATURAL, IntensityEmbedding


def timestep_sinusoid(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """timestep [B] -> [B, dim] float32, cat(cos, sin) of t * 10000^(-i/(dim/2)) (Wan's convention)."""
    half = dim // 2
    freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float32, device=timestep.device) / half)  # [dim/2]
    angles = timestep.float()[:, None] * freqs  # [B, dim/2]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig, alpha: float, attention, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        dim = cfg.dim
        self.norm1 = operations.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False, **factory)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps, attention, operations, **factory)
        self.norm3 = operations.LayerNorm(dim, eps=cfg.eps, **factory)
        self.cross_attn = AudioAttention(dim, cfg.num_heads, cfg.eps, attention, alpha, operations, **factory)
        self.norm2 = operations.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False, **factory)
        self.ffn = nn.Sequential(
            operations.Linear(dim, cfg.ffn_dim, **factory),
            nn.GELU(approximate="tanh"),
            operations.Linear(cfg.ffn_dim, dim, **factory),
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim, **factory) / dim**0.5)

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor, t_mod: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """x [B, S, D], audio [B, F, M, D], t_mod [B, 6, D] -> [B, S, D]."""
        e = (self.modulation.to(t_mod) + t_mod).chunk(6, dim=1)  # 6 x [B, 1, D]
        shift1, scale1, gate1, shift2, scale2, gate2 = e
        x = x + self.self_attn(self.norm1(x) * (1 + scale1) + shift1, rope) * gate1
        x = x + self.cross_attn(self.norm3(x), audio)
        return x + self.ffn(self.norm2(x) * (1 + scale2) + shift2) * gate2


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.norm = operations.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False, **factory)
        self.head = operations.Linear(cfg.dim, cfg.out_channels * math.prod(cfg.patch_size), **factory)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim, **factory) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, S, D], t [B, D] -> [B, S, out_channels * prod(patch_size)]."""
        shift, scale = (self.modulation.to(t) + t[:, None]).chunk(2, dim=1)  # [B, 1, D] each
        return self.head(self.norm(x) * (1 + scale) + shift)


class RAPTransformer(nn.Module):
    """Velocity model: (noisy latent, reference latent, timestep, audio tokens) -> velocity."""

    def __init__(self, config: RAPConfig, operations=nn, device=None, dtype=None, attention_backend: str = "sdpa"):
        super().__init__()
        self.config = config
        cfg = config.dit
        factory = dict(device=device, dtype=dtype)
        attention = resolve_attention(attention_backend)
        self.patch_embedding = operations.Conv3d(
            cfg.in_channels, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, **factory
        )
        self.time_embedding = nn.Sequential(
            operations.Linear(cfg.freq_dim, cfg.dim, **factory),
            nn.SiLU(),
            operations.Linear(cfg.dim, cfg.dim, **factory),
        )
        self.time_projection = nn.Sequential(nn.SiLU(), operations.Linear(cfg.dim, 6 * cfg.dim, **factory))
        self.intensity = (
            IntensityEmbedding(cfg.freq_dim, cfg.dim, operations, **factory) if cfg.intensity_control else None
        )
        self.blocks = nn.ModuleList(
            DiTBlock(cfg, alpha, attention, operations, **factory)
            for alpha in self._alphas(cfg.audio_mode, cfg.alpha_w, cfg.alpha_delta)
        )
        self.head = Head(cfg, operations, **factory)
        self.identity = FaceIdentity(cfg, attention, operations, **factory) if cfg.identity_attention else None
        self.audio_proj = AudioProjection(
            config.audio, config.vae.temporal_stride, cfg.dim, operations, device=device, dtype=dtype
        )
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def drop_identity(self) -> None:
        """Remove the identity branch: the ablation of the same weights never attending to the face."""
        self.identity = None

    def _alphas(self, mode: str, alpha_w: float, alpha_delta: float) -> list[float]:
        layers = self.config.dit.num_layers
        return [audio_alpha(mode, i, layers, alpha_w, alpha_delta) for i in range(layers)]

    def set_audio_mode(self, mode: str, alpha_w: float = 1.0, alpha_delta: float = 0.0) -> None:
        """Switch every block's audio attention to `mode` ("window" | "full" | "hybrid") in place."""
        for block, alpha in zip(self.blocks, self._alphas(mode, alpha_w, alpha_delta)):
            block.cross_attn.alpha = alpha

    def _rope(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (grid, device)
        if key not in self._rope_cache:
            cos, sin = rope_tables(self.config.dit.head_dim, grid, self.config.dit.rope_theta)
            self._rope_cache[key] = (cos.to(device), sin.to(device))
        return self._rope_cache[key]

    def encode_audio(self, frame_windows: torch.Tensor) -> torch.Tensor:
        """frame_windows [B, T, W, L, Ca] (T = 1 + stride*(F-1)) -> audio tokens [B, F, M, D]."""
        return self.audio_proj(frame_windows)

    def forward(
        self, x: torch.Tensor, ref: torch.Tensor, timestep: torch.Tensor, audio_tokens: torch.Tensor,
        intensity: torch.Tensor | None = None, face: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x, ref [B, C, F, h, w]; timestep [B] (or [1], shared) in 0..1000; audio_tokens [B, F', M, D]
        with F' = F / patch_t; intensity [B, 2] (or [1, 2]; expression, head motion in 0..1; None: the
        median clip), used when the DiT has the intensity branch; face [B, C, 1, h', w'] (or [1, ...]): the
        latent of the portrait's face crop, used when the DiT has the identity branch -> velocity
        [B, C, F, h, w]."""
        cfg = self.config.dit
        pt, ph, pw = cfg.patch_size
        if x.shape != ref.shape or x.shape[2] % pt or x.shape[3] % ph or x.shape[4] % pw:
            raise RAPInputError(
                f"DiT inputs must be two latents of the same shape [B, C, F, h, w] with F, h, w divisible "
                f"by the patch size {cfg.patch_size}; got noisy {tuple(x.shape)} and reference {tuple(ref.shape)}."
            )
        tokens = self.patch_embedding(torch.cat([x, ref], dim=1))  # [B, D, f, h', w']
        f, h, w = tokens.shape[2:]
        if audio_tokens.shape[:2] != (x.shape[0], f):
            raise RAPInputError(
                f"Audio tokens {tuple(audio_tokens.shape)} do not match the latent: expected [B={x.shape[0]}, "
                f"F={f}, M, D]. Encode the audio windows of this chunk with encode_audio()."
            )
        # Contiguous: the transposed view's strides would carry through every residual add of every
        # block (elementwise ops keep their input's layout) and slow them all.
        tokens = rearrange(tokens, "b d f h w -> b (f h w) d").contiguous()  # [B, S, D]
        # FlashHead casts the timestep to the model dtype before the sinusoid (bf16: 937.5 -> 936).
        timestep = timestep.reshape(-1).expand(x.shape[0]).to(tokens.device, tokens.dtype)  # [B]
        sinusoid = timestep_sinusoid(timestep, cfg.freq_dim).to(tokens.dtype)  # [B, freq_dim]
        t = self.time_embedding(sinusoid)  # [B, D]
        if self.intensity is not None:
            controls = torch.tensor([NATURAL]) if intensity is None else intensity.reshape(-1, 2)
            controls = controls.to(tokens.device, torch.float32).expand(x.shape[0], 2)  # [B, 2]
            # each control on the timestep scale (0..1000), half of freq_dim each
            waves = timestep_sinusoid(controls.reshape(-1) * 1000, cfg.freq_dim // 2)  # [B*2, freq_dim/2]
            t = t + self.intensity(rearrange(waves, "(b two) f -> b (two f)", two=2).to(t))  # [B, D]
        t_mod = rearrange(self.time_projection(t), "b (six d) -> b six d", six=6)  # [B, 6, D]
        rope = self._rope((f, h, w), tokens.device)
        audio = audio_tokens.to(tokens.device, tokens.dtype)
        faces = None
        if self.identity is not None and face is not None:
            faces = self.identity.tokens(face.to(tokens.device, tokens.dtype))  # [1 or B, N, D]
            faces = faces.expand(x.shape[0], -1, -1)  # [B, N, D]
        for index, block in enumerate(self.blocks):
            tokens = block(tokens, audio, t_mod, rope)
            if faces is not None:
                tokens = tokens + self.identity.attend(index, tokens, faces)
        out = self.head(tokens, t)  # [B, S, pt*ph*pw*C]
        return rearrange(
            out, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ph, pw=pw
        )  # [B, C, F, h, w]


def build_dit(
    config: RAPConfig, device=None, dtype=None, operations=nn, attention_backend: str = "sdpa"
) -> RAPTransformer:
    """Build the DiT of `config` (device="meta" builds it without memory, for loading big checkpoints)."""
    return RAPTransformer(
        config, operations=operations, device=device, dtype=dtype, attention_backend=attention_backend
    )


def fresh_optional_branches(config: RAPConfig) -> dict[str, nn.Module]:
    """The optional branches `config` enables, newly initialised on the CPU (their outputs are zero),
    by key prefix: what a checkpoint made before them loads with."""
    cfg = config.dit
    branches = {}
    if cfg.intensity_control:
        branches["intensity"] = IntensityEmbedding(cfg.freq_dim, cfg.dim)
    if cfg.identity_attention:
        branches["identity"] = FaceIdentity(cfg, resolve_attention("sdpa"))
    return branches
