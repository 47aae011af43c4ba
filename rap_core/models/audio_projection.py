"""Audio windows -> audio tokens: FlashHead's per-latent-frame packing and projection MLP.

Input is one context window of `window` wav2vec2 frames (all hidden layers) around every video
frame. Latent frame 0 covers one video frame and keeps its whole window; every later latent
frame covers `stride` video frames and keeps the past half-window of its first frame, the centre
of each middle frame and the future half-window of its last frame (`stride + window - 1` vectors).
Key layout matches FlashHead's `audio_proj.{proj1,proj1_vf,proj2,proj3,norm}`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..config import AudioConfig


def pack_latent_windows(frame_windows: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """frame_windows [B, T, W, L, C] with T = 1 + stride*(F-1)
    -> first [B, 1, W, L, C], rest [B, F-1, stride+W-1, L, C]."""
    window = frame_windows.shape[2]
    mid = window // 2
    first = frame_windows[:, :1]
    groups = rearrange(frame_windows[:, 1:], "b (f s) w l c -> b f s w l c", s=stride)  # [B, F-1, S, W, L, C]
    rest = torch.cat(
        [
            groups[:, :, 0, : mid + 1],  # first frame of the group: past context + centre
            groups[:, :, 1:-1, mid],  # middle frames: centre only, [B, F-1, S-2, L, C]
            groups[:, :, -1, mid:],  # last frame: centre + future context
        ],
        dim=2,
    )  # [B, F-1, (mid+1) + (S-2) + (W-mid), L, C]
    return first, rest


class AudioProjection(nn.Module):
    """Per-latent-frame audio windows -> `context_tokens` tokens of width `dim` per latent frame."""

    def __init__(self, audio: AudioConfig, stride: int, dim: int, operations=nn, device=None, dtype=None):
        super().__init__()
        self.stride, self.dim, self.context_tokens = stride, dim, audio.context_tokens
        per_vector = audio.num_hidden_layers * audio.hidden_size
        hidden = audio.intermediate_dim
        factory = dict(device=device, dtype=dtype)
        self.proj1 = operations.Linear(audio.window * per_vector, hidden, **factory)
        self.proj1_vf = operations.Linear((audio.window + stride - 1) * per_vector, hidden, **factory)
        self.proj2 = operations.Linear(hidden, hidden, **factory)
        self.proj3 = operations.Linear(hidden, audio.context_tokens * dim, **factory)
        self.norm = operations.LayerNorm(dim, eps=1e-5, **factory)

    def forward(self, frame_windows: torch.Tensor) -> torch.Tensor:
        """frame_windows [B, T, W, L, C] (T = 1 + stride*(F-1)) -> tokens [B, F, context_tokens, dim]."""
        first, rest = pack_latent_windows(frame_windows, self.stride)
        first = F.relu(self.proj1(rearrange(first, "b f w l c -> b f (w l c)")))  # [B, 1, hidden]
        rest = F.relu(self.proj1_vf(rearrange(rest, "b f w l c -> b f (w l c)")))  # [B, F-1, hidden]
        hidden = F.relu(self.proj2(torch.cat([first, rest], dim=1)))  # [B, F, hidden]
        tokens = rearrange(self.proj3(hidden), "b f (m d) -> b f m d", m=self.context_tokens)  # [B, F, M, D]
        # FlashHead normalises in float32 whatever the model dtype.
        normed = F.layer_norm(
            tokens.float(), (self.dim,), self.norm.weight.float(), self.norm.bias.float(), self.norm.eps
        )
        return normed.to(tokens.dtype)
