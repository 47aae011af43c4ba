"""Reproducible random networks, for the `tiny` preset (tests and demos without weight files).

Each network has its own seed, so the CLI and the ComfyUI loaders, which build the three networks
separately, get the same weights.
"""

from __future__ import annotations

import torch

from ..config import RAPConfig
from ..models.audio import build_audio_encoder
from ..models.dit import RAPTransformer, build_dit
from ..models.vae import VideoVAE, build_vae

_SEEDS = {"dit": 0, "vae": 1, "audio_encoder": 2}


def random_dit(config: RAPConfig, device=None, dtype=None, attention_backend: str = "sdpa") -> RAPTransformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEEDS["dit"])
        return build_dit(config, device=device, dtype=dtype, attention_backend=attention_backend).eval()


def random_vae(config: RAPConfig, device=None, dtype=None) -> VideoVAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEEDS["vae"])
        return build_vae(config, device=device, dtype=dtype).eval()


def random_audio_encoder(config: RAPConfig, device=None) -> torch.nn.Module:
    """The preset's audio encoder: random wav2vec2 weights, or the weight-free mel transform."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEEDS["audio_encoder"])
        return build_audio_encoder(config.audio, device=device).eval()
