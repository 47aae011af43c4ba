"""VAE checkpoint key conversion: diffusers `AutoencoderKLLTXVideo`, original LTX-Video, or ours.

- diffusers (FlashHead's `VAE_LTX/`, Lightricks' `vae/`): nested stages, e.g.
  `encoder.down_blocks.0.{resnets.N, downsamplers.0, conv_out}`, `decoder.up_blocks.2.{conv_in,
  upsamplers.0, resnets.N}`, `{encoder,decoder}.mid_block.resnets.N`, `conv_shortcut.conv.*`,
  `latents_mean` / `latents_std`.
- original (Lightricks' `CausalVideoAutoencoder`, ComfyUI's `VideoVAE`, single-file checkpoints
  under `vae.`): one flat block list per side, `encoder.down_blocks.N` / `decoder.up_blocks.N`
  (`.res_blocks.M` inside resnet stacks), `norm3.norm.*`, `per_channel_statistics.{mean,std}-of-means`
  plus three statistics nothing reads (`channel`, `mean-of-stds`, `mean-of-stds_over_std-of-means`),
  which are dropped.
- ours: the original layout with `norm3.*` and `latents_mean` / `latents_std` (see models/vae.py).

The block order of both layouts comes from the config (`encoder_plan` / `decoder_plan`). Keys are
only renamed or dropped here; completeness and shapes are checked by `loading.strict`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..config import RAPConfig, VAEConfig
from ..errors import CheckpointError
from ..models.vae import decoder_plan, encoder_plan
from .strict import listing

# Present in every layout; whatever precedes them is a wrapper prefix such as "vae.".
_ANCHORS = ("encoder.conv_in.conv.weight", "decoder.conv_in.conv.weight")
_STATISTICS = {
    "per_channel_statistics.mean-of-means": "latents_mean",
    "per_channel_statistics.std-of-means": "latents_std",
}
_UNUSED_STATISTICS = (
    "per_channel_statistics.channel",
    "per_channel_statistics.mean-of-stds",
    "per_channel_statistics.mean-of-stds_over_std-of-means",
)
_DIFFUSERS_PARTS = {
    "encoder": ("down_blocks", {"res": "resnets", "down": "downsamplers.0", "channels": "conv_out"}),
    "decoder": ("up_blocks", {"res": "resnets", "up": "upsamplers.0", "channels": "conv_in"}),
}
_LAYOUTS = (
    "diffusers AutoencoderKLLTXVideo (e.g. 'decoder.mid_block.resnets.0.conv1.conv.weight', 'latents_mean'); "
    "original LTX-Video CausalVideoAutoencoder, also under 'vae.' (e.g. "
    "'decoder.up_blocks.0.res_blocks.0.conv1.conv.weight', 'per_channel_statistics.mean-of-means'); "
    "ComfyUI-RAP's own (e.g. 'decoder.up_blocks.0.res_blocks.0.conv1.conv.weight', 'latents_mean')"
)


def _unknown(keys: list[str], why: str) -> CheckpointError:
    return CheckpointError(
        f"The VAE checkpoint {why} (keys seen: {listing(sorted(keys)) or 'no keys'}). Accepted layouts: {_LAYOUTS}. "
        "Load the LTX-Video 0.9.0 VAE, e.g. FlashHead's VAE_LTX/diffusion_pytorch_model.safetensors."
    )


def _vae_prefix(keys: list[str]) -> str:
    prefixes = {k[: -len(a)] for k in keys for a in _ANCHORS if k.endswith(a)}
    if not prefixes:
        raise _unknown(keys, "has no 'encoder.conv_in.conv.weight' or 'decoder.conv_in.conv.weight'")
    if len(prefixes) > 1:
        raise _unknown(keys, f"holds several VAEs, under the prefixes {sorted(prefixes)}")
    return prefixes.pop()


def _layout(keys: list[str]) -> str:
    if any(k.startswith(("encoder.mid_block.", "decoder.mid_block.")) or ".resnets." in k for k in keys):
        return "diffusers"
    if any(k.startswith("per_channel_statistics.") or ".norm3.norm." in k for k in keys):
        return "original"
    if any(".res_blocks." in k for k in keys):
        return "ours"
    raise _unknown(keys, "matches no known layout")


def _diffusers_prefixes(config: VAEConfig) -> dict[str, str]:
    """diffusers module prefix -> ours, e.g. 'decoder.up_blocks.1.upsamplers.0.' -> 'decoder.up_blocks.2.'."""
    table = {}
    for side, plan in (("encoder", encoder_plan(config)), ("decoder", decoder_plan(config))):
        blocks, parts = _DIFFUSERS_PARTS[side]
        for n, block in enumerate(plan):
            ours = f"{side}.{blocks}.{n}." + ("res_blocks." if block.kind == "res" else "")
            stage = f"{side}.mid_block." if block.stage is None else f"{side}.{blocks}.{block.stage}."
            theirs = stage + ("resnets." if block.stage is None else parts[block.kind] + ".")
            table[theirs] = ours
    return table


def _from_diffusers(key: str, prefixes: Mapping[str, str]) -> str:
    key = key.replace(".conv_shortcut.conv.", ".conv_shortcut.")
    for theirs, ours in prefixes.items():
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return key


def _from_original(key: str) -> str:
    return _STATISTICS.get(key, key.replace(".norm3.norm.", ".norm3."))


def convert_vae_state_dict(state_dict: Mapping[str, torch.Tensor], config: RAPConfig) -> dict[str, torch.Tensor]:
    """Return `state_dict` (diffusers, original LTX-Video, or our own keys) in our VAE layout.

    A wrapper prefix before the VAE keys (e.g. 'vae.') is stripped; in a single-file checkpoint
    that bundles other models, only the tensors under the VAE's prefix are kept. Unknown keys are
    passed through so the strict load names them.
    """
    keys = list(state_dict)
    if not keys:
        raise CheckpointError(
            f"The VAE checkpoint for preset '{config.name}' holds no tensors; the file is empty or not a VAE."
        )
    prefix = _vae_prefix(keys)
    tensors = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    layout = _layout(list(tensors))
    if layout == "diffusers":
        table = _diffusers_prefixes(config.vae)
        return {_from_diffusers(k, table): v for k, v in tensors.items()}
    if layout == "original":
        return {_from_original(k): v for k, v in tensors.items() if k not in _UNUSED_STATISTICS}
    return tensors
