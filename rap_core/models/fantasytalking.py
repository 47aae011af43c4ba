"""FantasyTalking's released audio branch, for a Wan 2.1 image-to-video transformer.

wav2vec2-base-960h's last hidden state (768 channels, ~50 per second) goes through a bias-free
projection to 2048 and a LayerNorm. Every latent frame takes a window of those tokens centred on
its four video frames (the first latent frame, which is the start image, takes the window just
before the second's), widened by EXPAND tokens on both sides. In every transformer block the
cross-attention's own text query also attends, one latent frame at a time, to that frame's window
through the block's `k_proj`/`v_proj` (2048 -> dim, no bias); the result, times `audio_scale`,
joins the text and image attention before the block's output projection.

The window arithmetic (`latent_windows`) reproduces the official release's index ranges
(fantasy-talking's `split_audio_sequence` with `split_tensor_with_padding(expand_length=4)`); its
missing tokens are masked out of the attention, as the release does when flash-attn is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..timing import covered_video_frames, latent_frame_count, video_frame_count

AUDIO_DIM = 768  # wav2vec2-base hidden size
CONTEXT_DIM = 2048  # the projected audio tokens
EXPAND = 4  # tokens added to both sides of every latent frame's window
VIDEO_FRAMES_PER_LATENT = 4  # Wan 2.1's VAE: latent frame 0 is one video frame, every later one four


class AudioKeyValue(nn.Module):
    """One block's audio keys and values (keys k_proj.weight, v_proj.weight: [dim, 2048])."""

    def __init__(self, dim: int, operations=nn, device=None, dtype=None):
        super().__init__()
        self.k_proj = operations.Linear(CONTEXT_DIM, dim, bias=False, device=device, dtype=dtype)
        self.v_proj = operations.Linear(CONTEXT_DIM, dim, bias=False, device=device, dtype=dtype)


class FantasyTalkingAudio(nn.Module):
    """The released weights in our layout: proj.weight, norm.{weight,bias}, blocks.{i}.{k,v}_proj.weight."""

    def __init__(self, dim: int, num_blocks: int, operations=nn, device=None, dtype=None):
        super().__init__()
        self.dim = dim
        self.proj = operations.Linear(AUDIO_DIM, CONTEXT_DIM, bias=False, device=device, dtype=dtype)
        self.norm = operations.LayerNorm(CONTEXT_DIM, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(AudioKeyValue(dim, operations, device, dtype) for _ in range(num_blocks))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """wav2vec2 last hidden state [B, L, 768] -> audio tokens [B, L, 2048]."""
        return self.norm(self.proj(features))


def speech_tokens(encoder, audio: FantasyTalkingAudio, mono: torch.Tensor) -> torch.Tensor:
    """mono 16 kHz speech [S] -> its projected audio tokens [N, 2048] float32 on the CPU (N ~ 50 per
    second); `encoder` is a wav2vec2-base-960h rap_core.models.audio.Wav2Vec2Encoder."""
    device, dtype = audio.proj.weight.device, audio.proj.weight.dtype
    with torch.no_grad():
        hidden = encoder.last_hidden_state(mono[None].to(encoder.model.device))  # [1, N, 768]
        return audio.project(hidden.to(device, dtype))[0].float().cpu()  # [N, 2048]


def video_length(num_samples: int, sample_rate: int, fps: int) -> int:
    """Video frames covering `num_samples` of speech at `fps`, rounded up to Wan's 1 + 4k."""
    frames = video_frame_count(num_samples, sample_rate, fps)
    return covered_video_frames(latent_frame_count(frames, VIDEO_FRAMES_PER_LATENT), VIDEO_FRAMES_PER_LATENT)


def tokens_per_frame(num_tokens: int, num_samples: int, sample_rate: int, fps: float) -> float:
    """Audio tokens per video frame for `num_tokens` tokens of `num_samples` samples (the release
    divides the tokens of the video's stretch of audio by its frame count; this is the same rate)."""
    return num_tokens * sample_rate / (num_samples * fps)


def latent_windows(tokens: torch.Tensor, latent_frames: int, per_frame: float) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens [L, C] -> every latent frame's window [F, W, C] and which of its tokens exist [F, W]
    (W = 2 int(4p / 2) + 1 + 2 EXPAND; tokens before the start or past the end are zero and masked)."""
    half = int(per_frame * VIDEO_FRAMES_PER_LATENT / 2)
    firsts = []
    for i in range(1, max(latent_frames, 2)):
        start, end = per_frame * ((i - 1) * VIDEO_FRAMES_PER_LATENT + 1), per_frame * (i * VIDEO_FRAMES_PER_LATENT + 1)
        firsts.append(int((start + end) / 2) - 1 - half)
    firsts = [firsts[0] - 2 * half, *firsts][:latent_frames]  # frame 0 ends where frame 1 begins
    width = 2 * half + 1 + 2 * EXPAND
    index = torch.tensor(firsts)[:, None] - EXPAND + torch.arange(width)  # [F, W]
    present = (index >= 0) & (index < tokens.shape[0])  # [F, W]
    windows = tokens[index.clamp(0, tokens.shape[0] - 1)] * present[..., None].to(tokens.dtype)  # [F, W, C]
    return windows, present


@dataclass(frozen=True)
class AudioFrames:
    """What one transformer call needs: the latent frames' audio windows on its device and how
    strongly each batch row hears them (0 silences a row, e.g. the unconditional one under audio CFG)."""

    windows: torch.Tensor  # [F, W, 2048]
    present: torch.Tensor  # [F, W] bool
    row_scale: torch.Tensor  # [B]


class AudioCrossAttention(nn.Module):
    """A Wan cross-attention (children `q`, `norm_q`, `o`, ...; attribute `num_heads`) plus one
    block's FantasyTalking audio attention (child `audio`).

    It adopts the wrapped module's children under their own names, so every weight keeps its key
    (`blocks.{i}.cross_attn.q.weight` still names the same tensor, for LoRAs and offloading), and
    runs the wrapped module's own forward. Without AudioFrames in `transformer_options`, or with
    every row's scale 0, it returns exactly what the wrapped cross-attention returns.
    """

    def __init__(self, cross_attention: nn.Module, audio: AudioKeyValue, frames_key: str):
        super().__init__()
        for name, child in cross_attention.named_children():
            self.add_module(name, child)
        self.audio = audio
        self.num_heads = cross_attention.num_heads
        self.wrapped_forward = cross_attention.forward  # a plain attribute: the module is not a child twice
        self.frames_key = frames_key  # where a call's AudioFrames sit in transformer_options

    def forward(self, x: torch.Tensor, context: torch.Tensor, *args, transformer_options: dict | None = None, **kwargs):
        options = transformer_options or {}
        out = self.wrapped_forward(x, context, *args, transformer_options=options, **kwargs)
        frames: AudioFrames | None = options.get(self.frames_key)
        if frames is None or not bool(frames.row_scale.any()):
            return out
        num_frames, heads, batch = frames.windows.shape[0], self.num_heads, x.shape[0]
        if x.shape[1] % num_frames:
            raise ValueError(f"{x.shape[1]} video tokens do not split into {num_frames} latent frames.")
        q = rearrange(self.norm_q(self.q(x)), "b (f n) (h d) -> (b f) h n d", f=num_frames, h=heads)  # [B*F, H, N, d]
        windows = frames.windows.to(x.dtype)
        k, v = (
            repeat(projection(windows), "f w (h d) -> (b f) h w d", b=batch, h=heads)  # [B*F, H, W, d]
            for projection in (self.audio.k_proj, self.audio.v_proj)
        )
        # a window with no token at all (past the end of the audio) attends to its zero tokens
        visible = frames.present | ~frames.present.any(1, keepdim=True)  # [F, W]
        mask = repeat(visible, "f w -> (b f) 1 1 w", b=batch)
        heard = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B*F, H, N, d]
        heard = rearrange(heard, "(b f) h n d -> b (f n) (h d)", b=batch)
        heard = self.o(heard) - self.o(torch.zeros_like(heard[:, :1]))  # the output projection without its bias
        return out + heard * frames.row_scale.to(x.dtype)[:, None, None]
