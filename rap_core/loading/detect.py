"""Which preset a DiT or VAE weight file belongs to (the loaders' `auto` preset).

The preset the file's metadata names wins (our trainers write `preset`); otherwise the first preset
whose network the file's keys and shapes fit, in any layout the loaders read. rap-1.3b shares
flashhead-lite's layout, so a rap-1.3b file without that metadata reads as flashhead-lite. Of a
safetensors file only the header is read: no tensor is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from ..config import get_preset, preset_names
from ..errors import CheckpointError
from ..models.dit import build_dit
from ..models.vae import build_vae
from .checkpoint import read_state_dict
from .dit_keys import convert_dit_state_dict
from .models import WeightsArg, with_optional_branches
from .strict import check_state_dict
from .vae_keys import convert_vae_state_dict

BY_SHAPE = ("flashhead-lite", "demo", "tiny")  # presets a file's shapes tell apart, in the order tried


def _layout(weights: WeightsArg) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Meta tensors of the weights' keys and shapes, and the file's metadata ({} where there is none)."""
    if isinstance(weights, Mapping):
        return {key: torch.empty(value.shape, device="meta", dtype=value.dtype) for key, value in weights.items()}, {}
    if Path(weights).suffix in (".safetensors", ".sft"):
        with safe_open(os.fspath(weights), "pt") as file:
            dtypes = {key: file.get_slice(key).get_dtype() for key in file.keys()}  # "F16", "BF16", "I8", ...
            state = {
                key: torch.empty(
                    file.get_slice(key).get_shape(),
                    device="meta",
                    dtype=torch.float32 if "F" in dtypes[key] else torch.int64,
                )
                for key in dtypes
            }
            return state, file.metadata() or {}
    return _layout(read_state_dict(weights))[0], {}


def _fits(kind: str, state: dict[str, torch.Tensor], name: str) -> bool:
    config = get_preset(name)
    try:
        if kind == "dit":
            check_state_dict(
                build_dit(config, device="meta"),
                with_optional_branches(config, convert_dit_state_dict(state, config)),
                "DiT",
            )
        else:
            check_state_dict(build_vae(config, device="meta"), convert_vae_state_dict(state, config), "VAE")
    except CheckpointError:
        return False
    return True


def detect_preset(weights: WeightsArg, kind: str) -> str:
    """The preset of a "dit" or "vae" weight file (or state dict); CheckpointError if none fits."""
    state, metadata = _layout(weights)
    if metadata.get("preset") in preset_names():
        return metadata["preset"]
    for name in BY_SHAPE:
        if _fits(kind, state, name):
            return name
    origin = "the given state dict" if isinstance(weights, Mapping) else f"'{os.fspath(weights)}'"
    raise CheckpointError(
        f"The {kind.upper()} weights {origin} fit none of the presets' networks ({', '.join(BY_SHAPE)}); choose the "
        "preset by hand, or check that the file is a complete DiT or VAE checkpoint."
    )
