"""How one chunk hands over to the next (DESIGN.md §2). Pure torch over latents [B, C, F, h, w].

Each strategy is driven by the pipeline: `before_step(i, x) -> x` inside the denoising loop (it
writes the chunk's prefix latent frames), `finish(x) -> x` after the last step, then
`hand_over(...)` with what the next chunk inherits.

- StepwiseInheritance (RAP, "inherit"): at every step i the first n latent frames of chunk k+1
  are chunk k's last n latent frames *at step i* (the noisy state the model saw). The first chunk
  starts from the static reference: its latent frame 0 follows the reference latent noised to
  each step's level along the chunk's own initial noise.
- CleanPrefix (FlashHead, "motion_frames"): the first latent frames are overwritten by clean
  latents at every step and once more at the end. The first chunk uses the reference latent's
  frame 0; later chunks the re-encoded, colour-matched last decoded frames of the previous chunk
  (the pipeline encodes them and calls `hand_over`).
- NoContinuity ("none"): chunks are independent clips.
"""

from __future__ import annotations

import torch

from .schedule import NUM_TRAIN_TIMESTEPS


class NoContinuity:
    prefix_latents = 0

    def before_step(self, step: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x


class StepwiseInheritance(NoContinuity):
    """RAP's step-wise latent inheritance of the previous chunk's last `n` noisy latent frames."""

    def __init__(self, n: int, reference: torch.Tensor, timesteps: torch.Tensor):
        """reference [B, C, 1, h, w]: the clean static latent the first chunk starts from."""
        self.prefix_latents = n
        self.reference, self.timesteps = reference, timesteps
        self.previous: list[torch.Tensor] | None = None  # per step: [B, C, n, h, w] of chunk k
        self.current: list[torch.Tensor] = []
        self.first_noise: torch.Tensor | None = None

    def before_step(self, step: int, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        if self.previous is None:
            if step == 0:
                self.first_noise = x[:, :, :1].clone()  # the chunk's own initial noise for frame 0
            t = float(self.timesteps[step]) / NUM_TRAIN_TIMESTEPS
            x[:, :, :1] = ((1 - t) * self.reference + t * self.first_noise).to(x.dtype)
        else:
            x[:, :, : self.prefix_latents] = self.previous[step]
        self.current.append(x[:, :, -self.prefix_latents :].clone())  # [B, C, n, h, w] at this step
        return x

    def hand_over(self) -> None:
        """Chunk done: its recorded trajectory becomes the next chunk's prefix."""
        self.previous, self.current = self.current, []


class CleanPrefix(NoContinuity):
    """FlashHead's clean motion latents, written at every step and after the last one."""

    def __init__(self, reference: torch.Tensor):
        """reference [B, C, 1, h, w]: the first chunk's single clean prefix latent frame."""
        self.prefix = reference
        self.prefix_latents = reference.shape[2]

    def before_step(self, step: int, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, :, : self.prefix.shape[2]] = self.prefix.to(x.dtype)
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.before_step(-1, x)

    def hand_over(self, prefix: torch.Tensor) -> None:
        """prefix [B, C, p, h, w]: the re-encoded tail of the chunk just decoded."""
        self.prefix = prefix
