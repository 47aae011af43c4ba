"""Audio classifier-free guidance over a `model_fn(x, t, audio) -> velocity`.

The null condition is the audio tokens projected from all-zero wav2vec2 features (FlashHead's
teacher drops audio the same way; RAP trains with 10 % of such drops). The pipeline builds it
once per chunk shape and passes it here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def audio_guidance(model_fn: ModelFn, scale: float, null_audio: torch.Tensor) -> ModelFn:
    """v = v_null + scale * (v_audio - v_null), both evaluated in ONE batched forward.

    Scale 1 returns `model_fn` unchanged (no second pass). `null_audio` broadcasts to `audio`.
    """
    if scale == 1.0:
        return model_fn

    def guided(x: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        both = model_fn(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([audio, null_audio.expand_as(audio)])
        )  # [2B, ...]: conditional first, then unconditional
        cond, uncond = both.chunk(2)
        return uncond + scale * (cond - uncond)

    return guided
