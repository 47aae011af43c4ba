"""The denoising loop. It drives a `model_fn` and knows nothing about the network."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import RAPInputError
from .guidance import ModelFn
from .steps import STEPPERS

StepHook = Callable[[int, torch.Tensor], torch.Tensor]


def denoise(
    model_fn: ModelFn,
    x: torch.Tensor,
    audio: torch.Tensor,
    timesteps: torch.Tensor,
    sampler: str = "euler",
    generator: torch.Generator | None = None,
    before_step: StepHook | None = None,
    after_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Integrate x [B, C, F, h, w] from timesteps[0] down to timesteps[-1] (= 0).

    `before_step(i, x) -> x` runs before every model call (continuity writes its prefix there);
    `after_step(i, x)` sees the updated latent (progress, cancellation, previews).
    """
    if sampler not in STEPPERS:
        raise RAPInputError(f"Unknown sampler '{sampler}'; choose one of {sorted(STEPPERS)}.")
    step = STEPPERS[sampler]
    for i in range(len(timesteps) - 1):
        t, t_next = float(timesteps[i]), float(timesteps[i + 1])
        if before_step is not None:
            x = before_step(i, x)
        v = model_fn(x, torch.full((x.shape[0],), t, device=x.device), audio)
        fresh = None
        if sampler == "renoise":  # a draw every step, the last too: FlashHead's noise stream (it multiplies that one by 0)
            draw_on = generator.device if generator is not None else x.device
            fresh = torch.randn(x.shape, generator=generator, device=draw_on).to(x.device, x.dtype)
        x = step(x, v.to(x.dtype), t, t_next, fresh)
        if after_step is not None:
            after_step(i, x)
    return x
