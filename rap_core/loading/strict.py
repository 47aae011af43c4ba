"""Strict state-dict checks: every key present, none extra, every shape and dtype kind right — or a clear error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import CheckpointError

_SHOWN = 8  # keys listed before "and N more"


def listing(keys: Sequence[str]) -> str:
    """The first keys and how many more: a checkpoint's errors name what they saw without pasting
    thousands of keys into the message."""
    shown = ", ".join(keys[:_SHOWN])
    more = len(keys) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise CheckpointError naming missing, unexpected, mis-shaped and mistyped keys of `state_dict` for `model`."""
    model_state = model.state_dict()
    expected = {name: tuple(t.shape) for name, t in model_state.items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{k} (file {tuple(state_dict[k].shape)}, model {expected[k]})"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != expected[k]
    )
    mistyped = sorted(
        f"{k} (file {state_dict[k].dtype}, model {model_state[k].dtype})"
        for k in set(expected) & set(state_dict)
        if state_dict[k].is_floating_point() != model_state[k].is_floating_point()
    )  # e.g. int8-quantized weights: casting them would not dequantize them
    problems = []
    if missing:
        problems.append(f"missing keys: {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {listing(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {listing(misshaped)}")
    if mistyped:
        problems.append(
            f"integer keys where the model has floats or the reverse (quantized files are not supported): "
            f"{listing(mistyped)}"
        )
    if problems:
        raise CheckpointError(
            f"The {what} weights do not fit this model ({'; '.join(problems)}). "
            "Check that the file belongs to this model and preset, and that it is complete."
        )


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, layout: nn.Module | None = None
) -> nn.Module:
    """Check `state_dict` strictly against `layout` (by default `model` itself), then load it into
    `model` (assign=True, so meta-device models take the tensors). `layout` is a plain-torch twin
    for a model whose layers hold no tensors until they load: ComfyUI's dynamic VRAM builds its
    Linear layers so, and such a model's own state_dict lacks them."""
    check_state_dict(model if layout is None else layout, state_dict, what)
    model.load_state_dict(state_dict, strict=True, assign=any(p.is_meta for p in model.parameters()))
    return model
