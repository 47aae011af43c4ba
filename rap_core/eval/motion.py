"""Head motion measured from pixels: each frame's translation of the head against the still
portrait (Lucas-Kanade on the head's edges), and its spread over a clip.

The synthetic world moves the head layers as one rigid translation (the sway), so one (x, y) per
frame describes it; the mouth box is left out, since a talking mouth changes shape, not place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import RAPInputError
from .frames import as_video

_ITERATIONS = 8  # Gauss-Newton steps; offsets here are a few pixels at most
_EDGE_REACH = 3  # pixels the face-skin mask is grown by, to take in the head's outline
TRACKING_REACH_PX = 1.0  # a followed mask's error: half a pixel of rounding, half of tracking


def follow(mask: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """mask [H, W] bool (of the still), offsets [T, 2] (x, y) pixels -> [T, H, W] bool: the mask
    moved by each offset rounded to whole pixels; what moves in from beyond the frame is False.
    A mask stable within TRACKING_REACH_PX (synthetic.layout with that sway) stays valid."""
    height, width = mask.shape
    moved = torch.zeros(offsets.shape[0], height, width, dtype=torch.bool)
    for frame, (dx, dy) in enumerate(offsets.round().long().tolist()):
        dx, dy = max(-width, min(width, dx)), max(-height, min(height, dy))
        moved[frame, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = mask[
            max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
        ]
    return moved


def head_region(face_skin: torch.Tensor, mouth_box: tuple[int, int, int, int]) -> torch.Tensor:
    """face_skin [H, W] bool (rap_core.synthetic.Layout), mouth box (y0, y1, x0, x1) -> [H, W] bool:
    the face and a band around it (its outline, hairline, eyes), without the mouth box."""
    reach = 2 * _EDGE_REACH + 1
    grown = F.max_pool2d(face_skin.float()[None, None], reach, stride=1, padding=_EDGE_REACH)[0, 0] > 0
    y0, y1, x0, x1 = mouth_box
    grown[y0:y1, x0:x1] = False
    return grown


def _shifted(image: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """image [H, W], offsets [T, 2] (x, y) in pixels -> [T, H, W]: the image moved by each offset."""
    height, width = image.shape
    ys = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)  # [H, W]
    xs = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)  # [H, W]
    source_x = xs[None] - offsets[:, 0, None, None]  # [T, H, W]: where each output pixel comes from
    source_y = ys[None] - offsets[:, 1, None, None]
    grid = torch.stack([source_x / (width - 1) * 2 - 1, source_y / (height - 1) * 2 - 1], dim=-1)  # [T, H, W, 2]
    batch = image[None, None].expand(offsets.shape[0], 1, height, width)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]


def head_offsets(frames, still, region) -> torch.Tensor:
    """frames [T, H, W, 3], still [H, W, 3] (floats 0..1), region [H, W] bool (head_region) ->
    offsets [T, 2]: each frame's (x, y) head translation against the still, in pixels."""
    video = as_video(frames)
    template = torch.as_tensor(still, dtype=torch.float32)
    mask = torch.as_tensor(region)
    if tuple(template.shape) != tuple(video.shape[1:]) or tuple(mask.shape) != tuple(video.shape[1:3]):
        raise RAPInputError(
            f"The still {tuple(template.shape)} and the region {tuple(mask.shape)} must match the frames "
            f"[H, W, 3] = {list(video.shape[1:])}."
        )
    if mask.dtype != torch.bool or not mask.any():
        raise RAPInputError("The head region must be a non-empty boolean [H, W] mask.")
    gray, target = video.mean(-1), template.mean(-1)  # [T, H, W], [H, W]
    offsets = torch.zeros(video.shape[0], 2)
    for _ in range(_ITERATIONS):
        moved = _shifted(target, offsets)  # [T, H, W]
        grad_y, grad_x = torch.gradient(moved, dim=(1, 2))
        g = torch.stack([grad_x, grad_y], dim=-1)[:, mask]  # [T, N, 2]
        error = (gray[:, mask] - moved[:, mask])[..., None]  # [T, N, 1]
        normal = g.transpose(1, 2) @ g  # [T, 2, 2]
        # moving the template by +d changes it by -grad * d: solve for the step that explains the error
        step = -torch.linalg.solve(normal + 1e-6 * torch.eye(2), g.transpose(1, 2) @ error)[..., 0]  # [T, 2]
        offsets = offsets + step
    return offsets


def motion_amplitude(offsets: torch.Tensor) -> float:
    """offsets [T, 2] -> the norm of their per-axis standard deviation (the synthetic world's label
    statistic, rap_core.training.data.motion_statistics, in pixels)."""
    return float(offsets.float().std(0).norm())
