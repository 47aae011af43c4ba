"""Input normalisation: any audio the user gives -> one mono float32 track at the model's rate."""

from __future__ import annotations

import torch
import torchaudio.functional as AF

from .errors import RAPInputError


def audio_to_mono(waveform, sample_rate: int, target_rate: int = 16000) -> torch.Tensor:
    """waveform [S], [C, S] or [B, C, S] (ComfyUI AUDIO; only the first item of a batch is used)
    -> [S'] float32 mono at `target_rate`, S' = ceil(S * target_rate / sample_rate).

    Channels are averaged; resampling is torchaudio's band-limited sinc interpolation.
    Loudness is left alone: the wav2vec2 encoder normalises every clip itself, so quiet,
    loud and silent audio are all accepted.
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
        raise RAPInputError(
            f"The audio is empty (shape {tuple(audio.shape)}): give a clip with at least one sample."
        )
    for name, rate in (("sample_rate", sample_rate), ("target_rate", target_rate)):
        if not float(rate).is_integer() or rate <= 0:
            raise RAPInputError(f"Audio {name} must be a positive whole number of Hz, got {rate}.")
    audio = audio.to(torch.float32)
    if not torch.isfinite(audio).all():
        raise RAPInputError(
            "The audio contains NaN or infinite samples; decode or export it again as ordinary PCM audio."
        )
    mono = audio.mean(dim=0) if audio.ndim == 2 else audio  # [S]
    if int(sample_rate) == int(target_rate):
        return mono.contiguous()
    return AF.resample(mono, int(sample_rate), int(target_rate)).contiguous()
