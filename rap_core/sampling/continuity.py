"""How one chunk continues the one before it (DESIGN.md §2): one class per mode, one registry.

A talk drives its strategy: `before_step(i, x) -> x` inside the denoising loop (it writes the
chunk's prefix latent frames), `finish(x) -> x` after the last step, then `hand_over(video, encode)`
with what the next chunk inherits. Latents are [B, C, F, h, w].

- StepwiseInheritance (RAP, "inherit"): at every step i the first n latent frames of chunk k+1
  are chunk k's last n latent frames *at step i* (the noisy state the model saw). The first chunk
  starts from the static reference: its latent frame 0 follows the reference latent noised to
  each step's level along the chunk's own initial noise.
- CleanPrefix (FlashHead, "motion_frames"): the first latent frames are overwritten by clean
  latents at every step and once more at the end. The first chunk uses the reference latent's
  frame 0; later chunks the re-encoded, colour-matched last decoded frames of the previous chunk.
- NoContinuity ("none"): chunks are independent clips.

A new mode is a subclass here, added to CONTINUITIES (with its overlap field in SamplingConfig);
the sampler node, the CLI and the pipeline take their choices from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from ..config import SamplingConfig
from ..errors import RAPInputError
from ..timing import covered_video_frames
from .schedule import NUM_TRAIN_TIMESTEPS, noised

Encode = Callable[[torch.Tensor], torch.Tensor]  # video frames [B, 3, T, H, W] -> latents [B, C, F, h, w]


class Continuity:
    """The protocol: every method does nothing, so a mode overrides what it needs."""

    name: ClassVar[str]
    overlap_field: ClassVar[str | None] = None  # the SamplingConfig field of the latent frames chunks share
    needs_decoded_chunks: ClassVar[bool] = False  # whether hand_over needs each chunk decoded

    @classmethod
    def overlap(cls, sampling: SamplingConfig) -> int:
        """Latent frames two consecutive chunks share under this mode."""
        return 0 if cls.overlap_field is None else getattr(sampling, cls.overlap_field)

    @classmethod
    def start(cls, sampling: SamplingConfig, first: torch.Tensor, timesteps: torch.Tensor, temporal_stride: int):
        """The state before a talk's first chunk. first [B, C, 1, h, w]: the reference's clean latent frame 0;
        timesteps [steps + 1]: the talk's schedule."""
        return cls()

    def before_step(self, step: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def hand_over(self, video: torch.Tensor | None, encode: Encode) -> None:
        """The chunk just sampled is done: keep what the next one inherits. video [B, 3, T_c, H, W]: the chunk
        decoded (None unless needs_decoded_chunks); encode: the talk's VAE encoding of frames."""


class NoContinuity(Continuity):
    """Independent chunks."""

    name = "none"


class StepwiseInheritance(Continuity):
    """RAP's step-wise latent inheritance of the previous chunk's last `n` noisy latent frames."""

    name = "inherit"
    overlap_field = "inherit_latents"

    @classmethod
    def start(cls, sampling: SamplingConfig, first: torch.Tensor, timesteps: torch.Tensor, temporal_stride: int):
        return cls(sampling.inherit_latents, first, timesteps)

    def __init__(self, n: int, reference: torch.Tensor, timesteps: torch.Tensor):
        """reference [B, C, 1, h, w]: the clean static latent the first chunk starts from."""
        self.n, self.reference, self.timesteps = n, reference, timesteps
        self.previous: list[torch.Tensor] | None = None  # per step: [B, C, n, h, w] of chunk k
        self.current: list[torch.Tensor] = []
        self.first_noise: torch.Tensor | None = None

    def before_step(self, step: int, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        if self.previous is None:
            if step == 0:
                self.first_noise = x[:, :, :1].clone()  # the chunk's own initial noise for frame 0
            t = float(self.timesteps[step]) / NUM_TRAIN_TIMESTEPS
            x[:, :, :1] = noised(self.reference, t, self.first_noise).to(x.dtype)
        else:
            x[:, :, : self.n] = self.previous[step]
        self.current.append(x[:, :, -self.n :].clone())  # [B, C, n, h, w] at this step
        return x

    def hand_over(self, video: torch.Tensor | None, encode: Encode) -> None:
        """Its recorded trajectory becomes the next chunk's prefix."""
        self.previous, self.current = self.current, []


class CleanPrefix(Continuity):
    """FlashHead's clean motion latents, written at every step and after the last one."""

    name = "motion_frames"
    overlap_field = "motion_latents"
    needs_decoded_chunks = True

    @classmethod
    def start(cls, sampling: SamplingConfig, first: torch.Tensor, timesteps: torch.Tensor, temporal_stride: int):
        return cls(first, sampling.motion_latents, temporal_stride)

    def __init__(self, first: torch.Tensor, n: int, temporal_stride: int):
        """first [B, C, 1, h, w]: the first chunk's single clean prefix latent frame; later chunks take
        `n` latent frames re-encoded from the tail of the chunk before."""
        self.prefix, self.n, self.temporal_stride = first, n, temporal_stride

    def before_step(self, step: int, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, :, : self.prefix.shape[2]] = self.prefix.to(x.dtype)
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.before_step(-1, x)

    def hand_over(self, video: torch.Tensor | None, encode: Encode) -> None:
        """The decoded chunk's last frames, re-encoded, become the next prefix [B, C, n, h, w]."""
        if video is None:
            raise RAPInputError("Motion-frame continuity needs each chunk decoded to hand over.")
        self.prefix = encode(video[:, :, -covered_video_frames(self.n, self.temporal_stride) :])


CONTINUITIES: dict[str, type[Continuity]] = {
    mode.name: mode for mode in (CleanPrefix, StepwiseInheritance, NoContinuity)
}


def continuity_mode(name: str) -> type[Continuity]:
    """The continuity mode called `name` (SamplingConfig.continuity)."""
    if name not in CONTINUITIES:
        raise RAPInputError(f"Unknown continuity '{name}'; choose one of {sorted(CONTINUITIES)}.")
    return CONTINUITIES[name]


def overlap_latents(sampling: SamplingConfig) -> int:
    """Latent frames two consecutive chunks share under `sampling.continuity`."""
    return continuity_mode(sampling.continuity).overlap(sampling)
