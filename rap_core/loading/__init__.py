"""Checkpoint formats and key conversion, strict loading, and where weight files come from."""

from .checkpoint import read_state_dict
from .dit_keys import convert_dit_state_dict
from .fantasytalking_keys import convert_fantasytalking_state_dict
from .models import load_dit, load_fantasytalking, load_vae, load_wav2vec2
from .sources import (
    FANTASYTALKING,
    FANTASYTALKING_FP16,
    FLASHHEAD_LITE_DIT,
    LTX_VIDEO_VAE,
    WAV2VEC2_BASE,
    WeightSource,
    locate,
)
from .vae_keys import convert_vae_state_dict

__all__ = [
    "FANTASYTALKING",
    "FANTASYTALKING_FP16",
    "FLASHHEAD_LITE_DIT",
    "LTX_VIDEO_VAE",
    "WAV2VEC2_BASE",
    "WeightSource",
    "convert_dit_state_dict",
    "convert_fantasytalking_state_dict",
    "convert_vae_state_dict",
    "load_dit",
    "load_fantasytalking",
    "load_vae",
    "load_wav2vec2",
    "locate",
    "read_state_dict",
]
