"""Single denoising updates over (x_t, velocity) from timestep t to t_next (0..1000 scale)."""

from __future__ import annotations

import torch

from .schedule import NUM_TRAIN_TIMESTEPS


def _scale(t: float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t / NUM_TRAIN_TIMESTEPS, dtype=like.dtype, device=like.device)


def euler_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic ODE step x_next = x + (t_next - t) * v (`noise` unused; same signature as renoise_step).

    The step size is rounded to x's dtype once, as FlashHead's teacher sampler does.
    """
    return x + _scale(t_next - t, x) * v


def renoise_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, noise: torch.Tensor | None = None) -> torch.Tensor:
    """FlashHead's distilled sampler: predict x0 = x - t*v, then re-noise to t_next with fresh noise.

    At t_next = 0 it returns x0, like Euler. `noise` [same shape as x] is the fresh draw.
    """
    x0 = x - _scale(t, x) * v
    if t_next == 0:
        return x0
    return (1 - _scale(t_next, x)) * x0 + _scale(t_next, x) * noise


STEPPERS = {"euler": euler_step, "renoise": renoise_step}
