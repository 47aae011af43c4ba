"""Steppers: single denoising updates over (x_t, velocity) from timestep t to t_next (0..1000 scale).

A stepper owns the noise it draws, so the loop that drives it (loop.denoise) knows nothing of
randomness. `stepper(name, generator)` makes the sampler a SamplingConfig names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import RAPInputError
from .schedule import NUM_TRAIN_TIMESTEPS

# (x_t, velocity, t, t_next) -> x at t_next
Stepper = Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]


def _scale(t: float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t / NUM_TRAIN_TIMESTEPS, dtype=like.dtype, device=like.device)


def euler(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """The deterministic ODE step x_next = x + (t_next - t) * v.

    The step size is rounded to x's dtype once, as FlashHead's teacher sampler does.
    """
    return x + _scale(t_next - t, x) * v


class Renoise:
    """FlashHead's distilled sampler: predict x0 = x - t*v, then re-noise it to t_next with a fresh draw.

    The draw comes from `generator` at every step, the last too, where t_next = 0 gives x0 like Euler
    (FlashHead multiplies that draw by 0): so the generator's stream stays FlashHead's.
    """

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def __call__(self, x: torch.Tensor, v: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
        draw_on = self.generator.device if self.generator is not None else x.device
        fresh = torch.randn(x.shape, generator=self.generator, device=draw_on).to(x.device, x.dtype)
        x0 = x - _scale(t, x) * v
        if t_next == 0:
            return x0
        return (1 - _scale(t_next, x)) * x0 + _scale(t_next, x) * fresh


STEPPERS: dict[str, Callable[[torch.Generator | None], Stepper]] = {
    "euler": lambda generator: euler,
    "renoise": Renoise,
}


def stepper(name: str, generator: torch.Generator | None = None) -> Stepper:
    """The sampler called `name` (SamplingConfig.sampler), drawing any noise from `generator`."""
    if name not in STEPPERS:
        raise RAPInputError(f"Unknown sampler '{name}'; choose one of {sorted(STEPPERS)}.")
    return STEPPERS[name](generator)
