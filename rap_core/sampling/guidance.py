"""Audio classifier-free guidance: a model of (x, t, audio) becomes a velocity function of (x, t).

The null condition is the audio tokens projected from all-zero wav2vec2 features (FlashHead's
teacher drops audio the same way; RAP trains with 10 % of such drops). The talk builds it once
per chunk and passes it here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .loop import Velocity

AudioModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t, audio tokens) -> v


def audio_guidance(
    model: AudioModel, audio: torch.Tensor, scale: float = 1.0, null_audio: torch.Tensor | None = None
) -> Velocity:
    """(x, t) -> v_null + scale * (v_audio - v_null), both evaluated in ONE batched forward.

    Scale 1 conditions on `audio` alone (one pass, no `null_audio` needed). `null_audio` broadcasts
    to `audio`.
    """
    if scale == 1.0:
        return lambda x, t: model(x, t, audio)
    if null_audio is None:
        raise ValueError("Audio guidance with a scale other than 1 needs the null audio tokens.")
    unconditional = null_audio.expand_as(audio)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([audio, unconditional]))  # [2B, ...]
        cond, uncond = both.chunk(2)  # conditional first, then unconditional
        return uncond + scale * (cond - uncond)

    return guided
