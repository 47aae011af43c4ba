"""Weight files -> ready networks: read, convert keys to our layout, check strictly, load.
The wav2vec2 encoder comes from a transformers folder, from disk only.

Networks are built on the meta device and take the file's tensors directly, so a 1.3B model never
exists twice in memory and is never randomly initialised first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import Wav2Vec2Model

from ..config import RAPConfig
from ..errors import CheckpointError, MissingWeightsError
from ..models.audio import WAV2VEC2_REPO, Wav2Vec2Encoder
from ..models.dit import RAPTransformer, build_dit, fresh_optional_branches
from ..models.fantasytalking import FantasyTalkingAudio
from ..models.vae import VideoVAE, build_vae
from .checkpoint import StateDict, cast_floating, read_state_dict
from .dit_keys import convert_dit_state_dict
from .fantasytalking_keys import convert_fantasytalking_state_dict
from .strict import listing, load_state_dict_strict
from .vae_keys import convert_vae_state_dict

WeightsArg = str | os.PathLike | StateDict
WAV2VEC2_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _read(weights: WeightsArg) -> tuple[StateDict, str]:
    if isinstance(weights, Mapping):
        return weights, "given state dict"
    return read_state_dict(weights), f"file '{os.fspath(weights)}'"


def _convert(convert, state: StateDict, config: RAPConfig | None, origin: str) -> dict[str, torch.Tensor]:
    """convert(state, config), with a layout error saying which weights it was about."""
    try:
        return convert(state, config)
    except CheckpointError as error:
        raise CheckpointError(f"{origin[0].upper()}{origin[1:]}: {error}") from error


def _load_built(build, operations, state: dict[str, torch.Tensor], what: str, device) -> nn.Module:
    """`build(operations=...)` on the meta device, strictly loaded with `state`, on `device`. With
    ComfyUI's operations the expected keys and shapes come from a plain-torch twin: under dynamic
    VRAM its Linear layers hold no tensors until load_state_dict runs."""
    model = build(operations=operations)
    load_state_dict_strict(model, state, what, layout=None if operations is nn else build(operations=nn))
    return model.to(device).eval()


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
    build = partial(build_dit, config, device="meta", dtype=dtype, attention_backend=attention_backend)
    converted = with_optional_branches(config, _convert(convert_dit_state_dict, state, config, origin))
    what = f"DiT ({origin}, preset '{config.name}')"
    return _load_built(build, operations, cast_floating(converted, dtype), what, device)


def with_optional_branches(config: RAPConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint with none of an optional branch's keys gets the branch's fresh, zero-output
    weights: it runs as it was trained. A branch present in part stays a strict-loading error."""
    filled = dict(state)
    for prefix, branch in fresh_optional_branches(config).items():
        if not any(key.startswith(prefix + ".") for key in state):
            filled.update({f"{prefix}.{key}": value for key, value in branch.state_dict().items()})
    return filled


def load_vae(
    weights: WeightsArg, config: RAPConfig, device=None, dtype: torch.dtype | None = None, operations=nn
) -> VideoVAE:
    """VAE of `config` from a diffusers, original LTX-Video or own-layout file (or state dict), strictly."""
    state, origin = _read(weights)
    converted = cast_floating(_convert(convert_vae_state_dict, state, config, origin), dtype)
    build = partial(build_vae, config, device="meta", dtype=dtype)
    return _load_built(build, operations, converted, f"VAE ({origin}, preset '{config.name}')", device)


def load_fantasytalking(
    weights: WeightsArg, device=None, dtype: torch.dtype | None = None, operations=nn
) -> FantasyTalkingAudio:
    """FantasyTalking's audio weights (either published layout), strictly; the width and the number
    of blocks come from the file and are checked against the Wan model it is applied to."""
    state, origin = _read(weights)
    converted = _convert(lambda layout, _: convert_fantasytalking_state_dict(layout), state, None, origin)
    blocks = {int(key.split(".")[1]) for key in converted if key.startswith("blocks.")}
    if "blocks.0.k_proj.weight" not in converted:
        raise CheckpointError(
            f"The FantasyTalking weights ({origin}) lack blocks.0.cross_attn k_proj: no audio attention to apply. "
            "Download the file again."
        )
    build = partial(
        FantasyTalkingAudio, converted["blocks.0.k_proj.weight"].shape[0], max(blocks) + 1, device="meta", dtype=dtype
    )
    return _load_built(build, operations, cast_floating(converted, dtype), f"FantasyTalking audio ({origin})", device)


def load_wav2vec2(directory: str | Path, device=None, dtype=None) -> Wav2Vec2Encoder:
    """Load a transformers wav2vec2 folder (config.json + model.safetensors or pytorch_model.bin)
    from disk only, never from the hub. dtype None keeps float32, as FlashHead runs it."""
    folder = Path(directory)
    if not folder.is_dir():
        raise MissingWeightsError("config.json", str(folder), WAV2VEC2_REPO, "The folder does not exist.")
    if not (folder / "config.json").is_file():
        raise MissingWeightsError("config.json", str(folder), WAV2VEC2_REPO)
    if not any((folder / name).is_file() for name in WAV2VEC2_WEIGHT_FILES):
        hint = f"('{WAV2VEC2_WEIGHT_FILES[1]}' works too.)"
        raise MissingWeightsError(WAV2VEC2_WEIGHT_FILES[0], str(folder), WAV2VEC2_REPO, hint)
    try:
        model, info = Wav2Vec2Model.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise CheckpointError(
            f"Could not load wav2vec2 from '{folder}': {str(error).rstrip('.')}. Expected the files of "
            f"'{WAV2VEC2_REPO}'; download them again."
        ) from error
    if info["missing_keys"]:
        raise CheckpointError(
            f"The wav2vec2 weights in '{folder}' lack {len(info['missing_keys'])} tensors "
            f"({listing(sorted(info['missing_keys']))}); "
            f"expected a complete checkpoint of '{WAV2VEC2_REPO}'. Download it again."
        )
    return Wav2Vec2Encoder(model).eval().to(device=device, dtype=dtype or torch.float32)
