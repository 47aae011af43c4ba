"""A training run's folder and per-step seeds: what lets a run stop at any moment and resume.

Files are written beside their final name and renamed over it, so an interrupted run never leaves
half a checkpoint; the loss log only grows, one JSON object a line; and every step's randomness
comes from a seed made of the run's seed and the step's indices alone, so a resumed run draws what
an uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

_MIX = 1_000_003  # a prime above any step, rank or clip count: distinct indices give distinct seeds


def step_seed(seed: int, *indices: int) -> int:
    """`seed` followed by `indices` (rank, step, clip ...) folded into one integer: (seed * P + i) * P + j ..."""
    for index in indices:
        seed = seed * _MIX + index
    return seed


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to `path` + ".tmp", then rename it over `path`: readers see the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_weights(path: Path, tensors: Mapping[str, torch.Tensor], preset: str, step: int, train_config) -> None:
    """Safetensors weights at `path`, replaced whole, recording the preset, the step and `train_config` (a dataclass),
    so a weights file says which training made it."""
    metadata = {"preset": preset, "step": str(step), "train_config": json.dumps(asdict(train_config))}
    contiguous = {name: tensor.contiguous() for name, tensor in tensors.items()}
    replace_atomically(path, lambda tmp: save_file(contiguous, tmp, metadata))


def append_log(path: Path, record: Mapping) -> None:
    """One JSON line appended to the log at `path`, closed at once: a crash loses no line already logged."""
    with open(path, "a") as log:
        log.write(json.dumps(record) + "\n")
