"""Optional branches start silent: their last layer begins at zero, so a network that gains one
computes exactly what it did without it."""

from __future__ import annotations

from torch import nn


def start_silent(layer: nn.Module) -> None:
    """Zero `layer`'s weight and bias. A layer built without tensors has nothing to zero: ComfyUI's
    dynamic VRAM creates Linear tensors only when load_state_dict runs, from the checkpoint."""
    for tensor in (layer.weight, layer.bias):
        if tensor is not None:
            nn.init.zeros_(tensor)
