"""Tiny files in the real layouts FantasyTalking runs on, for ComfyUI's own loaders and ours:

- a Wan 2.1 image-to-video transformer (ComfyUI's WanModel, 2 blocks of width 128, with the CLIP
  image projection, so core detects it as Wan 2.1 I2V), random weights;
- a Wan 2.1 VAE (ComfyUI's WanVAE at base width 8), random weights;
- FantasyTalking audio weights in the official fantasytalking_model.ckpt layout (nested dicts
  `proj_model` / `audio_processor`) for that transformer;
- a wav2vec2-base-layout folder with 768-channel features and one layer.

Every tensor is drawn from a seeded generator, so the files are the same on every run. Needs
ComfyUI's modules on sys.path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Wav2Vec2Config, Wav2Vec2Model

WAN_DIM, WAN_BLOCKS = 128, 2  # ComfyUI gives a Wan model dim // 128 heads
FANTASYTALKING_FILE = "FantasyTalking/fantasytalking_model.ckpt"  # under models/rap, the known choice
WAV2VEC2_FOLDER = "tiny-wav2vec2-768"


def _seeded(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state dict with fresh seeded values: norm scales 1, every other tensor N(0, 0.05^2)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in module.state_dict().items():
        if "norm" in name and name.endswith("weight") or name.endswith(".gamma"):
            state[name] = torch.ones(value.shape)
        else:
            state[name] = 0.05 * torch.randn(value.shape, generator=g)
    return state


def wan_i2v_state_dict() -> dict[str, torch.Tensor]:
    import comfy.ops
    from comfy.ldm.wan.model import WanModel

    model = WanModel(
        model_type="i2v",
        in_dim=36,
        dim=WAN_DIM,
        ffn_dim=256,
        out_dim=16,
        num_heads=WAN_DIM // 128,
        num_layers=WAN_BLOCKS,
        operations=comfy.ops.manual_cast,
        device="meta",
    )
    return _seeded(model, 1)


def wan_vae_state_dict() -> dict[str, torch.Tensor]:
    from comfy.ldm.wan.vae import WanVAE

    model = WanVAE(
        dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
    )
    return _seeded(model, 2)


def fantasytalking_checkpoint(blocks: int = WAN_BLOCKS, dim: int = WAN_DIM) -> dict[str, dict[str, torch.Tensor]]:
    """The official layout: {"proj_model": {...}, "audio_processor": {blocks.N.cross_attn.processor.k/v_proj.weight}}
    (N counts the Wan blocks)."""
    g = torch.Generator().manual_seed(3)
    audio = {}
    for i in range(blocks):
        for name in ("k_proj", "v_proj"):
            audio[f"blocks.{i}.cross_attn.processor.{name}.weight"] = 0.05 * torch.randn(dim, 2048, generator=g)
    projection = {
        "proj.weight": 0.05 * torch.randn(2048, 768, generator=g),
        "norm.weight": torch.ones(2048),
        "norm.bias": torch.zeros(2048),
    }
    return {"proj_model": projection, "audio_processor": audio}


def write_models(models: Path) -> dict[str, str]:
    """Write the four under a ComfyUI models folder; returns their names as the loaders list them."""
    for sub in ("diffusion_models", "vae", "rap/FantasyTalking"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    save_file(wan_i2v_state_dict(), models / "diffusion_models" / "tiny_wan21_i2v.safetensors")
    save_file(wan_vae_state_dict(), models / "vae" / "tiny_wan21_vae.safetensors")
    torch.save(fantasytalking_checkpoint(), models / "rap" / FANTASYTALKING_FILE)
    torch.manual_seed(4)
    config = Wav2Vec2Config(
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )
    Wav2Vec2Model(config).save_pretrained(models / "rap" / WAV2VEC2_FOLDER)
    return dict(
        unet="tiny_wan21_i2v.safetensors",
        vae="tiny_wan21_vae.safetensors",
        fantasytalking=FANTASYTALKING_FILE,
        encoder=WAV2VEC2_FOLDER,
    )
