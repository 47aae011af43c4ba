"""Inputs normalised for the model: any audio -> mono at the model's rate, the audio of a span of video
frames, any portrait -> an RGB tensor at the model's size (FlashHead's cover-and-crop geometry)."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from einops import rearrange

from ..checks import check_frame_range
from ..errors import RAPInputError

_MAX_SAMPLE = 2.0**31  # largest accepted |sample|: int32 PCM full scale
_MAX_RESAMPLE_RATIO = 1 << 24  # largest reduced down * up: torchaudio's filter bank has about that many taps


def audio_to_mono(waveform, sample_rate: int, target_rate: int = 16000) -> torch.Tensor:
    """waveform [S], [C, S] or [B, C, S] (ComfyUI AUDIO; only the first item of a batch is used)
    -> [S'] float32 mono at `target_rate`, S' = ceil(S * target_rate / sample_rate).

    Channels are averaged; resampling is torchaudio's band-limited sinc interpolation. Integer PCM
    is scaled to -1..1 (int16 by 1/32768, 8-bit offset binary around 128).
    Loudness is left alone: the wav2vec2 encoder normalises every clip itself, so quiet,
    loud and silent audio are all accepted. Refused: samples beyond +-2^31 (no PCM format goes
    there; they overflow the encoders) and rates whose ratio to `target_rate` reduces only to
    large numbers (44101 Hz: 44101/16000), whose torchaudio filter bank would take gigabytes.
    """
    audio = torch.as_tensor(waveform).detach()
    if audio.ndim not in (1, 2, 3):
        raise RAPInputError(
            f"Audio must be shaped [samples], [channels, samples] or [batch, channels, samples]; "
            f"got a {audio.ndim}-D tensor of shape {tuple(audio.shape)}."
        )
    if audio.ndim == 3:
        if audio.shape[0] == 0:
            raise RAPInputError("The audio batch is empty: give at least one clip.")
        audio = audio[0]
    if audio.numel() == 0:
        raise RAPInputError(f"The audio is empty (shape {tuple(audio.shape)}): give a clip with at least one sample.")
    for name, rate in (("sample_rate", sample_rate), ("target_rate", target_rate)):
        if not float(rate).is_integer() or rate <= 0:
            raise RAPInputError(f"Audio {name} must be a positive whole number of Hz, got {rate}.")
    if audio.dtype == torch.uint8:  # 8-bit PCM is offset binary: 128 is silence
        audio = (audio.to(torch.float32) - 128.0) / 128.0
    elif not audio.is_floating_point() and audio.dtype != torch.bool:  # signed PCM: full scale -> 1.0
        audio = audio.to(torch.float32) / 2.0 ** (torch.iinfo(audio.dtype).bits - 1)
    audio = audio.to(torch.float32)
    if not torch.isfinite(audio).all():
        raise RAPInputError(
            "The audio contains NaN or infinite samples; decode or export it again as ordinary PCM audio."
        )
    low, high = torch.aminmax(audio)
    peak = max(-low.item(), high.item())
    if peak > _MAX_SAMPLE:
        raise RAPInputError(
            f"The audio's samples reach a magnitude of {peak:.3g}; expected PCM levels (float audio about "
            f"-1..1, integer PCM at most 2^31). Decode or export it again as ordinary PCM audio."
        )
    mono = audio.mean(dim=0) if audio.ndim == 2 else audio  # [S]
    rate, target = int(sample_rate), int(target_rate)
    if rate == target:
        return mono.contiguous()
    down, up = rate // math.gcd(rate, target), target // math.gcd(rate, target)
    if down * up > _MAX_RESAMPLE_RATIO:
        raise RAPInputError(
            f"Audio at {rate} Hz cannot be resampled to {target} Hz in bounded memory: the rates only reduce "
            f"to {down}:{up}. Expected a common rate (8000, 16000, 22050, 44100, 48000 Hz ...); "
            f"resample the audio to one of them first."
        )
    length = -(-mono.numel() * target // rate)  # ceil(S * target / rate), exact
    # torchaudio sizes its output in float32, which drops the last sample of some long clips: resample
    # with 1 s of extra silence (its filter sees silence past the end anyway) and cut the exact length.
    return AF.resample(F.pad(mono, (0, rate)), rate, target)[:length].contiguous()


def audio_for_frames(waveform, sample_rate: int, fps: int, first: int, end: int) -> torch.Tensor:
    """The sound of video frames [first, end): waveform [C, S] -> [C, S'] with samples
    [floor(first * sr / fps), floor(end * sr / fps)); silence where the frames outlast the audio.
    Consecutive frame ranges give consecutive, non-overlapping pieces."""
    check_frame_range("Video", first, end, "first")
    wave = torch.as_tensor(waveform)
    low, high = first * sample_rate // fps, end * sample_rate // fps
    piece = wave.new_zeros(wave.shape[0], high - low)  # [C, S']
    available = wave[:, low:high]  # [C, <= S']
    piece[:, : available.shape[1]] = available
    return piece


_FLOAT_SLACK = 1e-3  # float images may overshoot [0, 1] by this much (rounding in upstream nodes)


def tensor_of(array) -> torch.Tensor:
    """torch.as_tensor that copies read-only numpy arrays (np.asarray of a PIL image) instead of warning."""
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array).detach()


def cover_and_crop(in_h: int, in_w: int, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """FlashHead's `resize_and_centercrop` geometry for an in_h x in_w image and a height x width
    target -> ((cover_h, cover_w), (top, left)): the size that covers the target keeping the aspect
    ratio, ceil(side * max(height / in_h, width / in_w)), and torchvision's centre-crop offsets
    (halves rounded to even)."""
    scale = max(Fraction(height, in_h), Fraction(width, in_w))  # exact, so a matching side never rounds up
    cover_h, cover_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    return (cover_h, cover_w), (round((cover_h - height) / 2), round((cover_w - width) / 2))


def rgb_image(image) -> torch.Tensor:
    """A portrait as prepare_image takes it -> [H, W, 3] float32 in 0..1, checked: channels-last
    [H, W], [H, W, C] or [B, H, W, C] with C in {1, 3, 4}; float in [0, 1] or uint8. Of a batch only
    the first image is used (with a warning); alpha is composited on white, greyscale repeated."""
    x = tensor_of(image)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255
    elif x.is_floating_point():
        x = x.to(torch.float32)
    else:
        raise RAPInputError(
            f"Images must be float in [0, 1] or uint8 in [0, 255], got dtype {x.dtype}; convert the image first."
        )
    if x.ndim == 4:
        if x.shape[0] == 0:
            raise RAPInputError("The image batch is empty: give one portrait image.")
        if x.shape[0] > 1:
            warnings.warn(f"Got a batch of {x.shape[0]} images; only the first is used as the portrait.", stacklevel=2)
        x = x[0]
    if x.ndim == 2:
        x = x[..., None]  # [H, W] -> [H, W, 1]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise RAPInputError(
            f"Images must be channels-last [H, W], [H, W, C] or [B, H, W, C] with C = 1, 3 or 4; "
            f"got shape {tuple(np.shape(image))}. A [C, H, W] tensor must be permuted to [H, W, C]."
        )
    in_h, in_w, channels = x.shape
    if x.numel() == 0:
        raise RAPInputError(f"The image is empty (shape {tuple(x.shape)}): give a picture with pixels.")
    if min(in_h, in_w) < 8:
        raise RAPInputError(f"The image is {in_w}x{in_h} pixels; give a portrait at least 8 pixels on each side.")
    if not torch.isfinite(x).all():
        raise RAPInputError("The image contains NaN or infinite values; load or export the picture again.")
    low, high = x.min().item(), x.max().item()
    if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
        raise RAPInputError(
            f"Float images must hold values in [0, 1], got [{low:.4g}, {high:.4g}]; "
            f"divide 0..255 pixel values by 255 (or pass them as uint8)."
        )
    x = x.clamp(0, 1)
    if channels == 4:
        alpha = x[..., 3:]
        x = x[..., :3] * alpha + (1 - alpha)  # straight alpha over a white background
    elif channels == 1:
        x = x.expand(in_h, in_w, 3)
    return x.contiguous()


def prepare_image(image, height: int, width: int) -> torch.Tensor:
    """Portrait image -> [3, height, width] float32 in [-1, 1] (0 -> -1, 1 -> 1), on the input's device.

    Channels-last input only (ComfyUI and numpy convention): [H, W], [H, W, C] or [B, H, W, C]
    with C in {1, 3, 4}; float in [0, 1] or uint8 in [0, 255]. Of a batch only the first image is
    used (with a warning). Alpha is composited on white (FlashHead instead drops it and keeps whatever
    colour hides under transparent pixels), greyscale is repeated to RGB.
    Geometry follows FlashHead's `resize_and_centercrop`: scale by max(height/H, width/W) to
    ceil(H*s) x ceil(W*s) so the image covers the target, keeping its aspect ratio (bilinear,
    antialiased when shrinking), then crop the centre with torchvision's `center_crop` offsets (halves
    rounded to even, so an odd margin puts the extra pixel above or below by parity).
    """
    for name, size in (("height", height), ("width", width)):
        if not float(size).is_integer() or size < 1:
            raise RAPInputError(f"Target image {name} must be a positive whole number of pixels, got {size}.")
    height, width = int(height), int(width)
    x = rgb_image(image)  # [H, W, 3]
    in_h, in_w, _ = x.shape
    x = rearrange(x, "h w c -> 1 c h w")  # [1, 3, H, W]
    (cover_h, cover_w), (top, left) = cover_and_crop(in_h, in_w, height, width)
    if (cover_h, cover_w) != (in_h, in_w):
        x = F.interpolate(x, size=(cover_h, cover_w), mode="bilinear", align_corners=False, antialias=True)
    x = x[0, :, top : top + height, left : left + width]  # [3, height, width]
    return (x * 2 - 1).clamp(-1, 1).contiguous()
