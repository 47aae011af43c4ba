"""Signed distances of the shapes the faces are drawn with, and their anti-aliased coverage.

A signed distance is negative inside a shape and positive outside, in normalised image units.
Coordinates come broadcastable: x [N, 1, W] and y [N, H, 1] give distances [N, H, W], so the
per-column and per-row work is done once and only the final combination is per pixel.
"""

from __future__ import annotations

import torch


def ellipse(x: torch.Tensor, y: torch.Tensor, cx, cy, rx, ry) -> torch.Tensor:
    """Distance to the ellipse centred (cx, cy) with half-axes (rx, ry); scalars or [N, 1, 1].

    First-order estimate |p/r| (|p/r| - 1) / |p/r²|: exact on circles and at the rim, good
    within a pixel near the rim of an elongated ellipse, which is all the anti-aliasing needs.
    """
    u, v = (x - cx) / rx, (y - cy) / ry
    k0 = torch.sqrt(u * u + v * v)
    k1 = torch.sqrt((u / rx) ** 2 + (v / ry) ** 2).clamp_min(1e-6)
    return k0 * (k0 - 1.0) / k1


def rounded_box(x: torch.Tensor, y: torch.Tensor, cx, cy, half_w, half_h, radius) -> torch.Tensor:
    """Exact distance to the box centred (cx, cy) with half-sizes (half_w, half_h), corners rounded by `radius`."""
    qx = (x - cx).abs() - half_w + radius
    qy = (y - cy).abs() - half_h + radius
    outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
    return outside + torch.minimum(torch.maximum(qx, qy), torch.zeros(())) - radius


def smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Union of two shapes with the seam rounded over a width of about `k`."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def coverage(distance: torch.Tensor, pixel: float) -> torch.Tensor:
    """Fraction of a pixel of side `pixel` inside the shape: 1 inside, 0 outside, a one-pixel ramp at the edge."""
    return (0.5 - distance / pixel).clamp(0.0, 1.0)
