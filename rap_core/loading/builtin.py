"""Networks a preset has without any weight file from the user: `tiny`'s reproducible random
networks and `demo`'s trained ones, shipped in `rap_core/weights/demo/` (made by `make demo-model`).
A mel-spectrogram audio encoder has no weights at all, so every preset that uses one has it built in;
`load_audio_encoder` gives a preset's audio encoder, built in or from a wav2vec2 folder.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..config import RAPConfig
from ..errors import MissingWeightsError, RAPInputError
from ..models.audio import SpeechEncoder, build_audio_encoder
from ..models.blazeface import BlazeFace
from ..models.dit import RAPTransformer
from ..models.vae import VideoVAE
from .models import load_dit, load_vae, load_wav2vec2
from .random_weights import random_audio_encoder, random_dit, random_vae

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "demo"  # dit.safetensors, vae.safetensors
BLAZEFACE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "blazeface" / "blazeface.safetensors"
BUILTIN_PRESETS = ("tiny", "demo")
DEMO_NOTICE = (
    "The demo model was trained on a synthetic cartoon world: it animates faces like assets/rap_portrait.png, "
    "not photographs of people. For photos, use the flashhead-lite preset with the SoulX-FlashHead-Lite weights "
    "(README, 'models/rap/')."
)


def has_builtin(preset: str) -> bool:
    return preset in BUILTIN_PRESETS


def _refuse(config: RAPConfig, what: str) -> RAPInputError:
    return RAPInputError(
        f"Preset '{config.name}' has no built-in {what} (only {' and '.join(BUILTIN_PRESETS)} have); "
        "give its weights (see README, 'models/rap/')."
    )


def _demo_file(name: str) -> Path:
    path = DEMO_WEIGHTS / name
    if not path.is_file():
        raise MissingWeightsError(
            name,
            str(DEMO_WEIGHTS),
            "comfyui-rap/ComfyUI-RAP",
            origin="it ships with ComfyUI-RAP: restore it with `git checkout -- rap_core/weights/demo`, "
            "or train it with `make demo-model`",
        )
    return path


def builtin_dit(
    config: RAPConfig, device=None, dtype=None, attention_backend: str = "sdpa", operations=nn
) -> RAPTransformer:
    if config.name == "tiny":
        return random_dit(config, device=device, dtype=dtype, attention_backend=attention_backend)
    if config.name == "demo":
        logging.getLogger("rap_core").warning(DEMO_NOTICE)
        return load_dit(
            _demo_file("dit.safetensors"),
            config,
            device=device,
            dtype=dtype,
            operations=operations,
            attention_backend=attention_backend,
        )
    raise _refuse(config, "DiT")


def builtin_vae(config: RAPConfig, device=None, dtype=None, operations=nn) -> VideoVAE:
    if config.name == "tiny":
        return random_vae(config, device=device, dtype=dtype)
    if config.name == "demo":
        return load_vae(_demo_file("vae.safetensors"), config, device=device, dtype=dtype, operations=operations)
    raise _refuse(config, "VAE")


def load_audio_encoder(config: RAPConfig, folder: str | os.PathLike | None = None, device=None) -> SpeechEncoder:
    """The preset's audio encoder, built in or from a folder: the weight-free mel transform, wav2vec2
    from `folder`, or (no folder, preset tiny) random wav2vec2 weights."""
    if config.audio.encoder == "mel":
        if folder is not None:
            raise RAPInputError(
                f"Preset '{config.name}' uses a mel-spectrogram audio encoder, which has no weights; "
                f"choose the built-in encoder instead of '{os.fspath(folder)}'."
            )
        return build_audio_encoder(config.audio, device=device).eval()
    if folder is not None:
        return load_wav2vec2(folder, device=device)
    if config.name == "tiny":
        return random_audio_encoder(config, device=device)
    raise _refuse(config, "audio encoder")


@lru_cache(maxsize=1)
def blazeface() -> BlazeFace:
    """The shipped face detector (weights/blazeface/), float32 on the CPU, in eval mode; loaded once per process."""
    if not BLAZEFACE_WEIGHTS.is_file():
        raise MissingWeightsError(
            BLAZEFACE_WEIGHTS.name,
            str(BLAZEFACE_WEIGHTS.parent),
            "comfyui-rap/ComfyUI-RAP",
            origin="it ships with ComfyUI-RAP: reinstall the package or restore rap_core/weights/blazeface",
        )
    model = BlazeFace()
    model.load_state_dict({key: value.float() for key, value in load_file(BLAZEFACE_WEIGHTS).items()})
    return model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
