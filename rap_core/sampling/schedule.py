"""Flow matching's conventions, shared by sampling and training: noising, the resolution shift, and
the denoising timesteps (a shifted uniform schedule or an explicit list, on the 0..1000 scale).

Convention (Wan / FlashHead): x_t = (1 - t) * x0 + t * noise with t = timestep / 1000, and the
network predicts the velocity v = noise - x0. Training draws its t through the same shift, so the
noise levels it learns are those the sampler visits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import RAPInputError

NUM_TRAIN_TIMESTEPS = 1000.0


def noised(x0: torch.Tensor, t: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) * x0 + t * noise for x0 and noise alike; t in 0..1, a float or a tensor that broadcasts
    (per sample: [B, 1, 1, 1, 1]). The velocity the network learns is noise - x0."""
    return (1 - t) * x0 + t * noise


def shifted(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Resolution shift u' = s*u / (1 + (s-1)*u) on the 0..1 scale: s > 1 spends more steps at high noise."""
    return shift * u / (1 + (shift - 1) * u)


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """`shifted` on the 0..1000 scale."""
    return shifted(t / NUM_TRAIN_TIMESTEPS, shift) * NUM_TRAIN_TIMESTEPS


def flow_timesteps(
    steps: int, shift: float = 1.0, explicit: Sequence[float] | None = None, schedule: str = "uniform"
) -> torch.Tensor:
    """Denoising timesteps, descending, with the final 0 appended: shape [steps + 1], float64.

    `explicit` (0..1000, descending, without the final 0) is used as given. Otherwise `steps` points
    are shifted by `shift`: with schedule "uniform", evenly spaced from 1000 down, exclusive of 0;
    with "flashhead", FlashHead's: np.linspace(1000, 1, steps), but [1000, 500] and [1000, 750, 500,
    250] for 2 and 4 steps (where the two agree), computed in float32 as it does. FlashHead-Lite's
    4 steps at shift 5 give [1000, 937.5, 833.33, 625, 0].
    """
    if explicit is not None:
        try:
            t = torch.tensor([float(v) for v in explicit], dtype=torch.float64)
        except (TypeError, ValueError):
            t = torch.empty(0)
        if t.numel() == 0 or not ((t[:-1] > t[1:]).all() and (t > 0).all() and (t <= NUM_TRAIN_TIMESTEPS).all()):
            raise RAPInputError(
                f"Explicit timesteps {explicit!r} must be a non-empty, strictly decreasing list of numbers "
                "in (0, 1000]; the final 0 is added for you."
            )
    else:
        if steps < 1:
            raise RAPInputError(
                f"steps must be at least 1 (got {steps}); each preset's own is in the README's "
                "recommended sampler settings."
            )
        if not shift > 0:
            raise RAPInputError(f"shift must be positive (got {shift}); 1 is no shift, FlashHead uses 5.")
        if schedule == "uniform":
            t = shift_timesteps(torch.linspace(NUM_TRAIN_TIMESTEPS, 0.0, steps + 1, dtype=torch.float64)[:-1], shift)
        elif schedule == "flashhead":
            if steps in (2, 4):
                t = torch.linspace(NUM_TRAIN_TIMESTEPS, 0.0, steps + 1, dtype=torch.float32)[:-1]
            else:
                t = torch.linspace(NUM_TRAIN_TIMESTEPS, 1.0, steps, dtype=torch.float64).float()  # as numpy's
            t = shift_timesteps(t, shift).double()
        else:
            raise RAPInputError(f"Unknown schedule '{schedule}'; choose uniform or flashhead.")
    return torch.cat([t, t.new_zeros(1)])
