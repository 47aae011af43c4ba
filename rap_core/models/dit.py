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
from .intensity import IntensityEmbedding
from .sinusoid import timestep_sinusoid


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: x [B, S, D] normalised, shift and scale [B, 1, D] from the time embedding -> [B, S, D].
    One expression for every modulation, written as Wan writes it: the checkpoint's outputs (and the
    pinned digests) depend on this exact order of operations."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    def __init__(self, dit_config: DiTConfig, alpha: float, attention, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        dim = dit_config.dim
        self.norm1 = operations.LayerNorm(dim, eps=dit_config.eps, elementwise_affine=False, **factory)
        self.self_attn = SelfAttention(dim, dit_config.num_heads, dit_config.eps, attention, operations, **factory)
        self.norm3 = operations.LayerNorm(dim, eps=dit_config.eps, **factory)
        self.cross_attn = AudioAttention(
            dim, dit_config.num_heads, dit_config.eps, attention, alpha, operations, **factory
        )
        self.norm2 = operations.LayerNorm(dim, eps=dit_config.eps, elementwise_affine=False, **factory)
        self.ffn = nn.Sequential(
            operations.Linear(dim, dit_config.ffn_dim, **factory),
            nn.GELU(approximate="tanh"),
            operations.Linear(dit_config.ffn_dim, dim, **factory),
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim, **factory) / dim**0.5)

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor, t_mod: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """x [B, S, D], audio [B, F, M, D], t_mod [B, 6, D] -> [B, S, D]."""
        e = (self.modulation.to(t_mod) + t_mod).chunk(6, dim=1)  # 6 x [B, 1, D]
        shift1, scale1, gate1, shift2, scale2, gate2 = e
        x = x + self.self_attn(modulate(self.norm1(x), shift1, scale1), rope) * gate1
        x = x + self.cross_attn(self.norm3(x), audio)
        return x + self.ffn(modulate(self.norm2(x), shift2, scale2)) * gate2


class Head(nn.Module):
    def __init__(self, dit_config: DiTConfig, operations=nn, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.norm = operations.LayerNorm(dit_config.dim, eps=dit_config.eps, elementwise_affine=False, **factory)
        out_features = dit_config.out_channels * math.prod(dit_config.patch_size)
        self.head = operations.Linear(dit_config.dim, out_features, **factory)
        self.modulation = nn.Parameter(torch.randn(1, 2, dit_config.dim, **factory) / dit_config.dim**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, S, D], t [B, D] -> [B, S, out_channels * prod(patch_size)]."""
        shift, scale = (self.modulation.to(t) + t[:, None]).chunk(2, dim=1)  # [B, 1, D] each
        return self.head(modulate(self.norm(x), shift, scale))


class RAPTransformer(nn.Module):
    """Velocity model: (noisy latent, reference latent, timestep, audio tokens) -> velocity."""

    def __init__(self, config: RAPConfig, operations=nn, device=None, dtype=None, attention_backend: str = "sdpa"):
        super().__init__()
        self.config = config
        dit_config = config.dit
        factory = dict(device=device, dtype=dtype)
        attention = resolve_attention(attention_backend)
        self.patch_embedding = operations.Conv3d(
            dit_config.in_channels,
            dit_config.dim,
            kernel_size=dit_config.patch_size,
            stride=dit_config.patch_size,
            **factory,
        )
        self.time_embedding = nn.Sequential(
            operations.Linear(dit_config.freq_dim, dit_config.dim, **factory),
            nn.SiLU(),
            operations.Linear(dit_config.dim, dit_config.dim, **factory),
        )
        self.time_projection = nn.Sequential(
            nn.SiLU(), operations.Linear(dit_config.dim, 6 * dit_config.dim, **factory)
        )
        self.intensity = (
            IntensityEmbedding(dit_config.freq_dim, dit_config.dim, operations, **factory)
            if dit_config.intensity_control
            else None
        )
        self.blocks = nn.ModuleList(
            DiTBlock(dit_config, alpha, attention, operations, **factory)
            for alpha in self._alphas(dit_config.audio_mode, dit_config.alpha_w, dit_config.alpha_delta)
        )
        self.head = Head(dit_config, operations, **factory)
        self.identity = (
            FaceIdentity(dit_config, attention, operations, **factory) if dit_config.identity_attention else None
        )
        self.audio_proj = AudioProjection(
            config.audio, config.vae.temporal_stride, dit_config.dim, operations, device=device, dtype=dtype
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

    def _check_inputs(self, x: torch.Tensor, ref: torch.Tensor, audio_tokens: torch.Tensor) -> None:
        """Fail with what to fix before a shape error deep in the network would: both latents alike and
        divisible by the patch size, one audio-token frame per latent patch frame."""
        patch = self.config.dit.patch_size
        if x.shape != ref.shape or any(size % p for size, p in zip(x.shape[2:], patch)):
            raise RAPInputError(
                f"DiT inputs must be two latents of the same shape [B, C, F, h, w] with F, h, w divisible "
                f"by the patch size {patch}; got noisy {tuple(x.shape)} and reference {tuple(ref.shape)}."
            )
        frames = x.shape[2] // patch[0]
        if audio_tokens.shape[:2] != (x.shape[0], frames):
            raise RAPInputError(
                f"Audio tokens {tuple(audio_tokens.shape)} do not match the latent: expected [B={x.shape[0]}, "
                f"F={frames}, M, D]. Encode the audio windows of this chunk with encode_audio()."
            )

    def _patchify(self, x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """x, ref [B, C, F, h, w] -> tokens [B, S, D] and their grid (f, h', w'), S = f*h'*w'."""
        tokens = self.patch_embedding(torch.cat([x, ref], dim=1))  # [B, D, f, h', w']
        grid = tuple(tokens.shape[2:])
        # Contiguous: the transposed view's strides would carry through every residual add of every
        # block (elementwise ops keep their input's layout) and slow them all.
        return rearrange(tokens, "b d f h w -> b (f h w) d").contiguous(), grid  # [B, S, D]

    def _unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """out [B, S, pt*ph*pw*C] on the grid (f, h', w') -> [B, C, F, h, w]."""
        (f, h, w), (pt, ph, pw) = grid, self.config.dit.patch_size
        return rearrange(
            out, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ph, pw=pw
        )  # [B, C, F, h, w]

    def _embed_time(self, timestep: torch.Tensor, intensity: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """timestep [B] or [1] in 0..1000 (+ intensity levels, when the DiT has that branch) -> t [B, D] in
        tokens' dtype: the one conditioning vector every block's AdaLN and the head read."""
        # FlashHead casts the timestep to the model dtype before the sinusoid (bf16: 937.5 -> 936).
        timestep = timestep.reshape(-1).expand(tokens.shape[0]).to(tokens.device, tokens.dtype)  # [B]
        sinusoid = timestep_sinusoid(timestep, self.config.dit.freq_dim).to(tokens.dtype)  # [B, freq_dim]
        t = self.time_embedding(sinusoid)  # [B, D]
        return t if self.intensity is None else t + self.intensity.embed(intensity, t)  # [B, D]

    def forward(
        self,
        x: torch.Tensor,
        ref: torch.Tensor,
        timestep: torch.Tensor,
        audio_tokens: torch.Tensor,
        intensity: torch.Tensor | None = None,
        face: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x, ref [B, C, F, h, w]; timestep [B] (or [1], shared) in 0..1000; audio_tokens [B, F', M, D]
        with F' = F / patch_t; intensity [B, 2] (or [1, 2]; expression, head motion in 0..1; None: the
        median clip), used when the DiT has the intensity branch; face [B, C, 1, h', w'] (or [1, ...]): the
        latent of the portrait's face crop, used when the DiT has the identity branch -> velocity
        [B, C, F, h, w]."""
        self._check_inputs(x, ref, audio_tokens)
        tokens, grid = self._patchify(x, ref)  # [B, S, D], (f, h', w')
        t = self._embed_time(timestep, intensity, tokens)  # [B, D]
        t_mod = rearrange(self.time_projection(t), "b (six d) -> b six d", six=6)  # [B, 6, D]
        audio = audio_tokens.to(tokens.device, tokens.dtype)  # [B, f, M, D]
        faces = None if self.identity is None else self.identity.context(face, tokens)  # [B, N, D] or None
        rope = self._rope(grid, tokens.device)  # cos, sin [S, head_dim/2]
        for index, block in enumerate(self.blocks):
            tokens = block(tokens, audio, t_mod, rope)  # [B, S, D]
            if faces is not None:
                tokens = tokens + self.identity.attend(index, tokens, faces)  # [B, S, D]
        return self._unpatchify(self.head(tokens, t), grid)  # [B, S, pt*ph*pw*C] -> [B, C, F, h, w]


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
    dit_config = config.dit
    branches = {}
    if dit_config.intensity_control:
        branches["intensity"] = IntensityEmbedding(dit_config.freq_dim, dit_config.dim)
    if dit_config.identity_attention:
        branches["identity"] = FaceIdentity(dit_config, resolve_attention("sdpa"))
    return branches
