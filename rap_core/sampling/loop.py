"""The denoising loop. It drives a velocity function `model_fn(x, t)` and a stepper, and knows
nothing about the network, its conditions or the noise a stepper draws."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .steps import Stepper

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, ...], t [B]) -> v like x
StepHook = Callable[[int, torch.Tensor], torch.Tensor]


def denoise(
    model_fn: Velocity, x: torch.Tensor, timesteps: torch.Tensor, step: Stepper, before_step: StepHook | None = None
) -> torch.Tensor:
    """Integrate x [B, C, F, h, w] (the initial noise) from timesteps[0] down to timesteps[-1] (= 0).

    `before_step(i, x) -> x` runs before every model call: continuity writes its prefix there, and
    progress, cancellation and previews see the latent the model is about to see.
    """
    for i in range(len(timesteps) - 1):
        t, t_next = float(timesteps[i]), float(timesteps[i + 1])
        if before_step is not None:
            x = before_step(i, x)
        v = model_fn(x, torch.full((x.shape[0],), t, device=x.device))
        x = step(x, v.to(x.dtype), t, t_next)
    return x
