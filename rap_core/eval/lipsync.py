"""Lip sync measured from pixels: how far the mouth opens in each frame, how loud the speech is in
each frame, and the correlation between the two at the best lag within a few frames.

Frame f of a clip holds the audio samples [floor(f * sr / fps), floor((f + 1) * sr / fps)) (the
frame rule of `rap_core.timing`), so the opening and the envelope of one clip both have
T = ceil(samples * fps / sr) entries and line up frame for frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from ..errors import RAPInputError
from ..timing import video_frame_count
from .frames import as_video

MIN_OVERLAP = 10  # frames two signals must share at every lag for a correlation to mean anything
_SKIN_QUANTILE = 0.9  # a frame's skin/lip level: 90 % of the box is at most this bright
_DARK_QUANTILE = 0.01  # a frame's darkest level: the darkest 1 % of the box
_OPEN_QUANTILE = 0.05  # the clip's interior level: a wide-open frame's darkest level
_MAX_INTERIOR = 0.4  # a mouth interior is at most 40 % of the skin's value; lips are far brighter
_RAMP = (0.375, 0.625)  # a pixel turns from interior to skin over this part of the interior..skin gap


@dataclass(frozen=True)
class LipSync:
    """Correlation of mouth opening and loudness: the best r, its lag in frames (positive: the
    mouth moves after the sound) and r at every lag tried."""

    r: float
    lag: int
    by_lag: dict[int, float]


def _quantile(values: torch.Tensor, q: float, dim: int) -> torch.Tensor:
    """Nearest-rank quantile along `dim` (torch.quantile refuses inputs of more than 16M values)."""
    rank = round(q * (values.shape[dim] - 1)) + 1
    return values.kthvalue(rank, dim=dim).values


def mouth_opening(frames, mouth_box: tuple[int, int, int, int]) -> torch.Tensor:
    """frames [T, H, W, 3] float 0..1, mouth_box (y0, y1, x0, x1) -> opening [T] float32: the area,
    in pixels, of dark mouth interior inside the box in each frame.

    The measure works on each pixel's value max(R, G, B), which keeps red lips and skin bright and
    only the mouth interior dark. Each frame's values are divided by that frame's skin level (the
    90th percentile inside the box), so a global brightness change cancels out. The clip sets its
    own threshold: its interior level is the darkest 1 % of the box in a wide-open frame (the 5th
    percentile over frames, so a single glitched frame does not set it), but never above 40 % of
    the skin level, so a clip whose mouth stays shut measures its lips as closed, not open. A pixel
    counts fully as interior below 3/8 of the way from that level to the skin level, not at all
    above 5/8, and linearly in between: edge pixels count by how much of them is interior, and a
    blurred, greyish interior still counts. The area does not change when the mouth moves inside
    the box. The box must hold mostly skin and lips (the mouth under all of its allowed sway),
    without hair or background.
    """
    video = as_video(frames)
    _, height, width, _ = video.shape
    y0, y1, x0, x1 = (int(v) for v in mouth_box)
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise RAPInputError(
            f"The mouth box (y0, y1, x0, x1) = {tuple(mouth_box)} is not a non-empty box inside the "
            f"{height}x{width} frames; give 0 <= y0 < y1 <= {height} and 0 <= x0 < x1 <= {width}."
        )
    value = rearrange(video[:, y0:y1, x0:x1].amax(dim=-1), "t h w -> t (h w)")  # [T, h*w]
    skin = _quantile(value, _SKIN_QUANTILE, dim=1).clamp(min=1e-6)  # [T]
    relative = value / skin[:, None]  # [T, h*w]: 1 = skin, near 0 = mouth interior
    darkest = _quantile(_quantile(relative, _DARK_QUANTILE, dim=1), _OPEN_QUANTILE, dim=0)
    interior = darkest.clamp(max=_MAX_INTERIOR)
    gap = 1 - interior
    low, high = interior + _RAMP[0] * gap, interior + _RAMP[1] * gap
    return ((high - relative) / (high - low)).clamp(0, 1).sum(dim=1)  # [T]


def loudness_envelope(waveform, sample_rate: int, fps: int = 25, floor_db: float = -60.0) -> torch.Tensor:
    """waveform [S] mono -> loudness [T] float32 in dB (full scale = 0 dB), T = ceil(S * fps / sr).

    Frame f is the RMS of samples [floor(f * sr / fps), floor((f + 1) * sr / fps)) (the last frame
    of the samples that exist), as 20 * log10(rms), never below `floor_db` (silence).
    """
    audio = torch.as_tensor(waveform)
    if audio.ndim != 1 or audio.numel() == 0:
        raise RAPInputError(
            f"The waveform must be mono samples [S] with S >= 1; got shape {tuple(audio.shape)}. "
            "Mix it down first (rap_core.media.normalise.audio_to_mono)."
        )
    audio = audio.to(torch.float64)
    if not torch.isfinite(audio).all():
        raise RAPInputError("The waveform contains NaN or infinite samples; give ordinary PCM audio.")
    frames = video_frame_count(audio.numel(), int(sample_rate), int(fps))
    bounds = torch.arange(frames + 1) * int(sample_rate) // int(fps)  # [T+1] first sample of each frame
    bounds[-1] = audio.numel()
    energy = torch.cat([audio.new_zeros(1), (audio**2).cumsum(0)])  # [S+1]
    power = (energy[bounds[1:]] - energy[bounds[:-1]]) / (bounds[1:] - bounds[:-1])  # [T]
    floor_power = 10.0 ** (floor_db / 10)
    return (10 * torch.log10(power.clamp(min=floor_power))).to(torch.float32)


def _signal(values, name: str) -> torch.Tensor:
    signal = torch.as_tensor(values).to(torch.float64)
    if signal.ndim != 1:
        raise RAPInputError(f"The {name} must be one value per frame [T]; got shape {tuple(signal.shape)}.")
    if not torch.isfinite(signal).all():
        raise RAPInputError(f"The {name} contains NaN or infinite values; measure it again from valid frames.")
    return signal


def _is_constant(signal: torch.Tensor) -> bool:
    """True when the signal varies by no more than float rounding (1e-9 of its size)."""
    return float(signal.max() - signal.min()) <= 1e-9 * max(1.0, float(signal.abs().max()))


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson r of two equally long float64 signals; 0 when either is constant."""
    if _is_constant(a) or _is_constant(b):
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b / (a.norm() * b.norm())).clamp(-1, 1))


def lipsync_score(opening, envelope, max_lag: int = 2) -> LipSync:
    """opening [T], envelope [T] -> the best Pearson r over lags -max_lag..max_lag and its lag.

    At lag k the opening of frame t + k is paired with the loudness of frame t, so a positive lag
    means the mouth moves after the sound. The best lag is the one with the highest r (the nearer
    to 0 on a tie); a constant signal correlates with nothing (r = 0). Every lag must leave at
    least MIN_OVERLAP frame pairs.
    """
    mouth, loud = _signal(opening, "mouth opening"), _signal(envelope, "loudness envelope")
    if mouth.numel() != loud.numel():
        raise RAPInputError(
            f"The mouth opening has {mouth.numel()} frames and the loudness envelope {loud.numel()}; "
            "measure both from the same clip (video frames = ceil(samples * fps / sample_rate))."
        )
    if max_lag < 0:
        raise RAPInputError(f"max_lag must be 0 or more frames, got {max_lag}.")
    frames = mouth.numel()
    if frames - max_lag < MIN_OVERLAP:
        raise RAPInputError(
            f"The clip has {frames} frames; lip sync at lags up to {max_lag} needs at least "
            f"{MIN_OVERLAP + max_lag}. Use a longer clip."
        )
    by_lag = {}
    for lag in range(-max_lag, max_lag + 1):
        sound = loud[: frames - lag] if lag >= 0 else loud[-lag:]
        mouth_after = mouth[lag:] if lag >= 0 else mouth[: frames + lag]
        by_lag[lag] = _pearson(sound, mouth_after)
    best = max(by_lag, key=lambda lag: (by_lag[lag], -abs(lag)))
    return LipSync(by_lag[best], best, by_lag)


def shuffled_control(opening, envelope, seed: int, block: int = 5, max_lag: int = 2, repeats: int = 8) -> float:
    """The best-lag r of `lipsync_score` with the envelope shuffled in time: the chance level a
    real lip-sync r must clear. The envelope is cut into blocks of `block` frames (the last one may
    be shorter) that are put in a random order, which keeps the envelope's own smoothness and so
    gives an honest chance level; the result is the mean over `repeats` shuffles drawn from `seed`.
    """
    loud = _signal(envelope, "loudness envelope")
    if block < 1 or repeats < 1:
        raise RAPInputError(f"block and repeats must be positive integers, got block={block}, repeats={repeats}.")
    generator = torch.Generator().manual_seed(int(seed))
    pieces = loud.split(block)
    scores = []
    for _ in range(repeats):
        order = torch.randperm(len(pieces), generator=generator).tolist()
        shuffled = torch.cat([pieces[i] for i in order])  # [T]
        scores.append(lipsync_score(opening, shuffled, max_lag).r)
    return sum(scores) / repeats
