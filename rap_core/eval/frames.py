"""The video the evaluation reads: frames [T, H, W, 3] float in 0..1, as the pipeline yields them."""

from __future__ import annotations

import torch

from ..errors import RAPInputError


def as_video(frames) -> torch.Tensor:
    """frames [T, H, W, 3] float 0..1 (tensor or array) -> float32 tensor [T, H, W, 3]; anything else is refused."""
    video = torch.as_tensor(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] == 0:
        raise RAPInputError(
            f"Frames must be an RGB video [T, H, W, 3] with at least one frame; got shape {tuple(video.shape)}."
        )
    if not video.is_floating_point():
        raise RAPInputError(
            f"Frames must be floats in 0..1 (got dtype {video.dtype}); divide 8-bit frames by 255 first."
        )
    return video.to(torch.float32)
