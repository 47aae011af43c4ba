"""Weight files -> ready networks: read, convert keys to our layout, check strictly, load.

Networks are built on the meta device and take the file's tensors directly, so a 1.3B model never
exists twice in memory and is never randomly initialised first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from ..config import RAPConfig
from ..models.dit import RAPTransformer, build_dit
from ..models.vae import VideoVAE, build_vae
from .checkpoint import StateDict, cast_floating, read_state_dict
from .dit_keys import convert_dit_state_dict
from .strict import load_state_dict_strict
from .vae_keys import convert_vae_state_dict

WeightsArg = str | os.PathLike | StateDict


def _read(weights: WeightsArg) -> tuple[StateDict, str]:
    if isinstance(weights, Mapping):
        return weights, "given state dict"
    return read_state_dict(weights), f"file '{os.fspath(weights)}'"


def load_dit(
    weights: WeightsArg,
    config: RAPConfig,
    device=None,
    dtype: torch.dtype | None = None,
    operations=nn,
    attention_backend: str = "sdpa",
) -> RAPTransformer:
    """DiT of `config` from a FlashHead/Wan, diffusers or own-layout file (or state dict), strictly."""
    state, origin = _read(weights)
    model = build_dit(config, device="meta", dtype=dtype, operations=operations, attention_backend=attention_backend)
    converted = cast_floating(convert_dit_state_dict(state, config), dtype)
    load_state_dict_strict(model, converted, what=f"DiT ({origin}, preset '{config.name}')")
    return model.to(device).eval()


def load_vae(
    weights: WeightsArg, config: RAPConfig, device=None, dtype: torch.dtype | None = None, operations=nn
) -> VideoVAE:
    """VAE of `config` from a diffusers, original LTX-Video or own-layout file (or state dict), strictly."""
    state, origin = _read(weights)
    model = build_vae(config, device="meta", dtype=dtype, operations=operations)
    converted = cast_floating(convert_vae_state_dict(state, config), dtype)
    load_state_dict_strict(model, converted, what=f"VAE ({origin}, preset '{config.name}')")
    return model.to(device).eval()
