"""Reading weight files into state dicts, with errors that name the file and the cause."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import CheckpointError

StateDict = Mapping[str, torch.Tensor]
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a `.safetensors` (or weights-only pickle `.pt/.pth/.ckpt/.bin`) file onto the CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Weights file '{path}' does not exist. Check the path or download the file.")
    try:
        if path.endswith(_PICKLE_SUFFIXES):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            state = load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"Weights file '{path}' could not be read ({type(exc).__name__}: {exc}). It is probably "
            "truncated or corrupt: download it again."
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"Weights file '{path}' does not hold a flat mapping of tensor names to tensors; "
            "give a state dict saved as .safetensors."
        )
    return dict(state)


def cast_floating(state_dict: StateDict, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Cast floating-point tensors to `dtype` (None keeps them); integer tensors are left alone."""
    if dtype is None:
        return dict(state_dict)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
