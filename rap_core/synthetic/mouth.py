"""The mouth a sound makes: per video frame, how open (loudness) and how wide (spectrum).

Video frame f hears samples [floor(f*sr/fps), floor((f+1)*sr/fps)) (rap_core.timing's frame rule),
so a sound in frames 10-14 opens the mouth in frames 10-14; the light smoothing (one frame each
side) only rounds the edges.
- openness: the frame's RMS level in dBFS mapped from GATE_DB (closed; anything quieter, silence
  included, stays closed) to FULL_DB (fully open), raised to OPEN_CURVE.
- width: the frame's spectral centroid on a log scale, CENTROID_HZ[0] (a rounded, narrow 'o') to
  CENTROID_HZ[1] (a wide 'ee'); it leans back to the rest width 0.5 as the mouth closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from ..errors import RAPInputError
from ..timing import video_frame_count

GATE_DB, FULL_DB = -40.0, -14.0
OPEN_CURVE = 1.5  # exponent on the 0..1 level: quiet frames open less, so syllables stand out
CENTROID_HZ = (300.0, 3000.0)
REST_WIDTH = 0.5
_SMOOTHING = (0.2, 0.6, 0.2)


@dataclass(frozen=True)
class MouthTrack:
    """openness [T] and width [T], both in 0..1, one value per video frame."""

    openness: torch.Tensor
    width: torch.Tensor


def _frames(waveform: torch.Tensor, sample_rate: int, fps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[S] -> the samples of every video frame, zero-padded: windows [T, L] and their mask [T, L] bool."""
    if waveform.ndim != 1 or waveform.numel() == 0 or not torch.isfinite(waveform).all():
        raise RAPInputError(
            f"The mouth track needs one non-empty, finite mono waveform shaped [samples]; got shape "
            f"{tuple(waveform.shape)}. Convert the audio with rap_core.media.normalise.audio_to_mono first."
        )
    frames = video_frame_count(waveform.numel(), sample_rate, fps)
    bounds = torch.arange(frames + 1) * sample_rate // fps  # [T + 1] first sample of every frame
    longest = int((bounds[1:] - bounds[:-1]).max())
    audio = F.pad(waveform.to(torch.float32), (0, int(bounds[-1]) + longest - waveform.numel()))
    index = bounds[:-1, None] + torch.arange(longest)  # [T, L]
    mask = index < bounds[1:, None]
    return audio[index] * mask, mask


def _level(windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """windows [T, L], mask [T, L] -> [T] RMS level in dBFS (-120 for digital silence)."""
    power = (windows * windows).sum(1) / mask.sum(1)
    return 10.0 * torch.log10(power + 1e-12)


def _smooth(track: torch.Tensor) -> torch.Tensor:
    """[T] -> [T]: one three-tap pass, edges repeated."""
    padded = F.pad(rearrange(track, "t -> 1 1 t"), (1, 1), mode="replicate")  # [1, 1, T + 2]
    kernel = torch.tensor([[_SMOOTHING]])  # [out=1, in=1, taps=3]
    return F.conv1d(padded, kernel)[0, 0]


def mouth_track(waveform: torch.Tensor, sample_rate: int, fps: int = 25) -> MouthTrack:
    """[S] mono audio -> the mouth of every one of its T = ceil(S * fps / sample_rate) video frames."""
    windows, mask = _frames(waveform, sample_rate, fps)
    openness = ((_level(windows, mask) - GATE_DB) / (FULL_DB - GATE_DB)).clamp(0.0, 1.0) ** OPEN_CURVE

    size = 1 << math.ceil(math.log2(windows.shape[1]))
    taper = torch.hann_window(windows.shape[1], periodic=False)
    spectrum = torch.fft.rfft(windows * taper, n=size, dim=1).abs() ** 2  # [T, size // 2 + 1]
    hertz = torch.fft.rfftfreq(size, d=1.0 / sample_rate)  # [size // 2 + 1]
    centroid = (spectrum * hertz).sum(1) / spectrum.sum(1).clamp_min(1e-12)
    low, high = CENTROID_HZ
    spread = (torch.log(centroid.clamp_min(1.0) / low) / math.log(high / low)).clamp(0.0, 1.0)
    width = REST_WIDTH + (spread - REST_WIDTH) * openness
    return MouthTrack(openness=_smooth(openness).clamp(0.0, 1.0), width=_smooth(width).clamp(0.0, 1.0))
