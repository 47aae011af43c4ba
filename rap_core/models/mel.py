"""The demo preset's speech features: a log-mel spectrogram on the video time grid.

A fixed transform with no weights, so it costs nothing to ship and runs fast on a CPU. Mel
power is taken every 10 ms over 25 ms windows, converted to dB, mapped to about -1..1 by a fixed
affine map (no per-clip normalisation: loudness is what opens a mouth), and averaged over each
video frame's span. It has Wav2Vec2Encoder's interface: features [B, T, L = 1, C = mel bands].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchaudio.transforms import MelSpectrogram

from ..config import AudioConfig
from ..errors import RAPInputError

WINDOW_S, HOP_S = 0.025, 0.010
FLOOR_DB, SPAN_DB = -100.0, 50.0  # dB -> (dB - FLOOR_DB) / SPAN_DB - 1: -100 dB -> -1, 0 dB -> 1


class MelEncoder(nn.Module):
    def __init__(self, audio: AudioConfig):
        super().__init__()
        window, hop = round(WINDOW_S * audio.sample_rate), round(HOP_S * audio.sample_rate)
        self.mel = MelSpectrogram(
            sample_rate=audio.sample_rate,
            n_fft=1 << (window - 1).bit_length(),
            win_length=window,
            hop_length=hop,
            n_mels=audio.hidden_size,
            power=2.0,
        )
        self.min_samples = window

    def forward(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """waveform [B, S] mono at the config's rate -> features [B, num_frames, 1, n_mels]."""
        if waveform.ndim != 2 or waveform.shape[1] < self.min_samples:
            raise RAPInputError(
                f"The mel encoder takes mono audio shaped [batch, samples] with at least {self.min_samples} "
                f"samples; got shape {tuple(waveform.shape)}."
            )
        if num_frames < 1:
            raise RAPInputError(f"num_frames must be at least 1, got {num_frames}.")
        power = self.mel(waveform.float())  # [B, M, N] at 100 Hz
        level = (10 * torch.log10(power.clamp_min(1e-10)) - FLOOR_DB) / SPAN_DB - 1  # [B, M, N]
        per_frame = F.adaptive_avg_pool1d(level, num_frames)  # [B, M, T]
        return rearrange(per_frame, "b m t -> b t 1 m")  # [B, T, 1, M]
