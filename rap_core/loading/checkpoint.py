"""Reading weight files into state dicts, with errors that name the file and the cause."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import CheckpointError

StateDict = Mapping[str, torch.Tensor]
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a `.safetensors` (or weights-only pickle `.pt/.pth/.ckpt/.bin`) file onto the CPU; a
    pickle of nested dicts comes back flat, with dotted keys."""
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
    except pickle.UnpicklingError as exc:  # torch's message: generic advice, then "WeightsUnpickler error: <cause>"
        cause = str(exc).partition("WeightsUnpickler error:")[2].strip().split("\n")[0].split(". Please")[0]
        raise CheckpointError(
            f"Weights file '{path}' is not a plain pickle of tensors ({cause or exc}). It is corrupt, or it "
            "pickles a whole model or training state, which is never unpickled (that could run code): "
            "download it again, or save the model's state_dict() as .safetensors."
        ) from exc
    if isinstance(state, Mapping):
        state = _flattened(state)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"Weights file '{path}' does not hold a flat mapping of tensor names to tensors; "
            "give a state dict saved as .safetensors."
        )
    return dict(state)


def _flattened(state: Mapping, prefix: str = "") -> dict:
    """Nested dicts of tensors (e.g. {"proj_model": {...}, "audio_processor": {...}}) -> one flat dict
    with dotted keys; anything else is kept as it is, for the caller to judge."""
    flat = {}
    for key, value in state.items():
        if isinstance(value, Mapping):
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def cast_floating(state_dict: StateDict, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Cast floating-point tensors to `dtype`; integer tensors are left alone. None keeps each
    tensor's dtype, except fp8, a storage-only format nothing computes in, which becomes float32."""

    def cast(v: torch.Tensor) -> torch.Tensor:
        if not v.is_floating_point():
            return v
        if dtype is not None:
            return v.to(dtype)
        return v.float() if v.element_size() == 1 else v

    return {k: cast(v) for k, v in state_dict.items()}
