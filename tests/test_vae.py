"""LTX-Video 0.9.0 VAE: parity with diffusers (diffusers and original key layouts) and input
errors. Models keep the 0.9.0 depth (layers 4,3,3,3,4; three 2x
spatio-temporal stages) at reduced widths so the file runs in seconds on a CPU."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from diffusers import AutoencoderKLLTXVideo

from rap_core.config import VAEConfig, get_preset
from rap_core.errors import CheckpointError, RAPInputError
from rap_core.loading.strict import check_state_dict, load_state_dict_strict
from rap_core.loading.vae_keys import convert_vae_state_dict
from rap_core.models import vae as vae_module
from rap_core.models.vae import DepthToSpace, Downsample, build_vae

CHANNELS = (8, 16, 32, 32)
DEMO_OPTIONS = {
    "shortcut_norm": False,
    "out_norm": False,
    "residual_sampling": True,
    "temporal_scaling": (False, False, True, False),
}
LATENT = 8  # the tiny preset's DiT expects 8 latent channels
CONFIG = get_preset("tiny").replace(
    vae=VAEConfig(latent_channels=LATENT, block_out_channels=CHANNELS, decoder_block_out_channels=CHANNELS)
)

# diffusers -> original LTX-Video names for the 0.9.0 block structure, written from Lightricks'
# CausalVideoAutoencoder (blocks res_x 4, compress_all, res_x_y, res_x 3, compress_all, res_x_y,
# res_x 3, compress_all, res_x 3, res_x 4; the decoder runs them in reverse).
ORIGINAL_PREFIXES = {
    "encoder.down_blocks.0.resnets.": "encoder.down_blocks.0.res_blocks.",
    "encoder.down_blocks.0.downsamplers.0.": "encoder.down_blocks.1.",
    "encoder.down_blocks.0.conv_out.": "encoder.down_blocks.2.",
    "encoder.down_blocks.1.resnets.": "encoder.down_blocks.3.res_blocks.",
    "encoder.down_blocks.1.downsamplers.0.": "encoder.down_blocks.4.",
    "encoder.down_blocks.1.conv_out.": "encoder.down_blocks.5.",
    "encoder.down_blocks.2.resnets.": "encoder.down_blocks.6.res_blocks.",
    "encoder.down_blocks.2.downsamplers.0.": "encoder.down_blocks.7.",
    "encoder.down_blocks.3.resnets.": "encoder.down_blocks.8.res_blocks.",
    "encoder.mid_block.resnets.": "encoder.down_blocks.9.res_blocks.",
    "decoder.mid_block.resnets.": "decoder.up_blocks.0.res_blocks.",
    "decoder.up_blocks.0.resnets.": "decoder.up_blocks.1.res_blocks.",
    "decoder.up_blocks.1.upsamplers.0.": "decoder.up_blocks.2.",
    "decoder.up_blocks.1.resnets.": "decoder.up_blocks.3.res_blocks.",
    "decoder.up_blocks.2.conv_in.": "decoder.up_blocks.4.",
    "decoder.up_blocks.2.upsamplers.0.": "decoder.up_blocks.5.",
    "decoder.up_blocks.2.resnets.": "decoder.up_blocks.6.res_blocks.",
    "decoder.up_blocks.3.conv_in.": "decoder.up_blocks.7.",
    "decoder.up_blocks.3.upsamplers.0.": "decoder.up_blocks.8.",
    "decoder.up_blocks.3.resnets.": "decoder.up_blocks.9.res_blocks.",
}
ORIGINAL_STATISTICS = {
    "latents_mean": "per_channel_statistics.mean-of-means",
    "latents_std": "per_channel_statistics.std-of-means",
}


def to_original(key: str) -> str:
    if key in ORIGINAL_STATISTICS:
        return ORIGINAL_STATISTICS[key]
    for old, new in ORIGINAL_PREFIXES.items():
        if key.startswith(old):
            key = new + key[len(old) :]
            break
    return key.replace(".conv_shortcut.conv.", ".conv_shortcut.").replace(".norm3.", ".norm3.norm.")


@pytest.fixture(scope="module")
def reference() -> AutoencoderKLLTXVideo:
    """diffusers' 0.9.0 architecture (decoder not causal, no timestep conditioning, no noise), random weights."""
    torch.manual_seed(0)
    model = AutoencoderKLLTXVideo(
        latent_channels=LATENT,
        block_out_channels=CHANNELS,
        decoder_block_out_channels=CHANNELS,
        layers_per_block=(4, 3, 3, 3, 4),
        decoder_layers_per_block=(4, 3, 3, 3, 4),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False,) * 5,
        timestep_conditioning=False,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.normal_(0.0, p[0].numel() ** -0.5)
            else:
                p.normal_(1.0 if "norm" in name else 0.0, 0.2)
        model.latents_mean.normal_()
        model.latents_std.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return torch.rand(1, 3, 17, 64, 96, generator=torch.Generator().manual_seed(1)) * 2 - 1


def ours_from(state_dict) -> torch.nn.Module:
    return load_state_dict_strict(build_vae(CONFIG).eval(), convert_vae_state_dict(state_dict, CONFIG), "VAE")


@torch.no_grad()
def assert_matches_reference(vae, reference, video) -> None:
    stats = (reference.latents_mean.view(-1, 1, 1, 1), reference.latents_std.view(-1, 1, 1, 1))
    posterior = reference.encode(video).latent_dist
    expected = (posterior.mean - stats[0]) / stats[1]
    latents = vae.encode(video)
    assert latents.shape == (1, LATENT, 3, 2, 3)
    assert (latents - expected).abs().max() < 1e-4

    sampled = vae.encode(video, sample=True, generator=torch.Generator().manual_seed(7))
    expected_sample = (posterior.sample(generator=torch.Generator().manual_seed(7)) - stats[0]) / stats[1]
    assert (sampled - expected_sample).abs().max() < 1e-4
    assert (sampled - latents).abs().max() > 1e-2  # sampling really adds posterior noise

    decoded = vae.decode(latents)
    expected_video = reference.decode(latents * stats[1] + stats[0]).sample
    assert decoded.shape == video.shape
    assert (decoded - expected_video).abs().max() < 1e-4


def test_diffusers_layout_matches_diffusers(reference, video):
    vae = ours_from(reference.state_dict())
    assert_matches_reference(vae, reference, video)
    # our own layout converts to itself
    again = convert_vae_state_dict(vae.state_dict(), CONFIG)
    assert again.keys() == vae.state_dict().keys()


def test_original_layout_matches_diffusers(reference, video):
    # a single-file checkpoint: the VAE under "vae." beside the transformer, with all five statistics
    original = {"vae." + to_original(k): v for k, v in reference.state_dict().items()}
    for unused in ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means"):
        original[f"vae.per_channel_statistics.{unused}"] = torch.ones(LATENT)
    original["model.diffusion_model.patchify_proj.weight"] = torch.zeros(4, 4)
    assert "vae.decoder.up_blocks.0.res_blocks.0.conv1.conv.weight" in original  # ComfyUI's LTXV marker key
    assert_matches_reference(ours_from(original), reference, video)


def test_full_size_checkpoints_fit_flashhead_lite():
    """The real 0.9.0 key/shape set (diffusers default config, meta tensors) in both layouts."""
    config = get_preset("flashhead-lite")
    with torch.device("meta"):
        diffusers_sd = AutoencoderKLLTXVideo().state_dict()
    vae = build_vae(config, device="meta")
    check_state_dict(vae, convert_vae_state_dict(diffusers_sd, config), "VAE")
    original = {"vae." + to_original(k): v for k, v in diffusers_sd.items()}
    check_state_dict(vae, convert_vae_state_dict(original, config), "VAE")
    # FlashHead's VAE_LTX/diffusion_pytorch_model.safetensors (float32) is 1,676,798,532 bytes:
    # our tensors fill all of it but a safetensors JSON header.
    tensor_bytes = 4 * sum(t.numel() for t in vae.state_dict().values())
    assert 0 < 1_676_798_532 - tensor_bytes < 64 * 1024


def test_unknown_layout_is_refused():
    with pytest.raises(CheckpointError, match="first_stage_model.encoder.down.0.block.0.conv1.weight"):
        convert_vae_state_dict({"first_stage_model.encoder.down.0.block.0.conv1.weight": torch.zeros(1)}, CONFIG)
    with pytest.raises(CheckpointError, match="no tensors"):
        convert_vae_state_dict({}, CONFIG)


def test_demo_options_add_no_weights():
    demo = get_preset("demo").vae
    assert {name: getattr(demo, name) for name in DEMO_OPTIONS} == DEMO_OPTIONS
    assert (demo.spatial_stride, demo.temporal_stride) == (32, 2)
    plain = build_vae(CONFIG).state_dict()
    options = build_vae(CONFIG.replace(vae=replace(CONFIG.vae, **DEMO_OPTIONS))).state_dict()
    assert set(options) == {k for k in plain if ".norm3." not in k}
    spatial_only = [k for k in options if options[k].shape != plain[k].shape]  # 2x2 upsamplers: 4C, not 8C
    assert spatial_only and all(k.endswith("conv.conv.weight") or k.endswith("conv.conv.bias") for k in spatial_only)


@pytest.mark.parametrize("temporal", [True, False], ids=["2x2x2", "1x2x2"])
def test_residual_samplers_shortcut_their_input(temporal):
    down = Downsample(8, causal=True, residual=True, temporal=temporal).eval()
    up = DepthToSpace(8, causal=False, residual=True, temporal=temporal).eval()
    with torch.no_grad():
        for p in [*down.parameters(), *up.parameters()]:
            p.zero_()  # every conv outputs 0: what is left is the parameter-free shortcut
    video = torch.randn(1, 8, 9, 4, 4, generator=torch.Generator().manual_seed(3))  # [B, C, T, H, W]
    pt = 2 if temporal else 1
    padded = torch.cat([video[:, :, :1]] * (pt - 1) + [video], dim=2)  # first frame once more in front if 2x
    blocks = padded.reshape(1, 8, (9 + pt - 1) // pt, pt, 2, 2, 2, 2)  # [B, C, t, pt, h, 2, w, 2]
    with torch.no_grad():
        assert torch.allclose(down(video), blocks.mean(dim=(3, 5, 7)), atol=1e-6)  # [1, 8, 5 or 9, 2, 2]
        doubled = up(video)  # [1, 8, 17 or 9, 8, 8]
    frames = 1 + pt * 8
    assert doubled.shape == (1, 8, frames, 8, 8)
    source = (torch.arange(frames) + pt - 1) // pt  # output frame j is frame j + 1 of the doubled clip
    assert torch.equal(doubled, video[:, :, source].repeat_interleave(2, 3).repeat_interleave(2, 4))


def test_bad_shapes_are_refused():
    vae = build_vae(get_preset("tiny")).eval()
    with pytest.raises(RAPInputError, match=r"1 \+ 8k frames.*Trim the clip to 9 or pad it to 17"):
        vae.encode(torch.zeros(1, 3, 16, 64, 64))
    with pytest.raises(RAPInputError, match="height 48.*multiple of 32"):
        vae.encode(torch.zeros(1, 3, 9, 48, 64))
    with pytest.raises(RAPInputError, match="width 70.*multiple of 32"):
        vae.encode(torch.zeros(1, 3, 9, 64, 70))
    with pytest.raises(RAPInputError, match=r"\[B, 3, T, H, W\]"):
        vae.encode(torch.zeros(1, 9, 64, 64, 3))
    with pytest.raises(RAPInputError, match=r"\[B, 8, F, h, w\]"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))


def test_onednn_convolutions_match_the_layers_and_leave_training_alone(monkeypatch):
    vae = build_vae(get_preset("demo")).eval()
    z = torch.randn(1, 64, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    decisions = []

    def spy(x, conv):
        decisions.append(fits(x, conv))
        return decisions[-1]

    fits = vae_module._onednn_fits
    monkeypatch.setattr(vae_module, "_onednn_fits", spy)
    with torch.no_grad():
        fast = vae.decode(z)
    assert decisions and all(decisions)  # every causal conv of an inference decode ran on oneDNN
    monkeypatch.setattr(vae_module, "_onednn_fits", lambda x, conv: False)
    with torch.no_grad():
        plain = vae.decode(z)
    assert (fast - plain).abs().max() < 1e-5
    decisions.clear()
    monkeypatch.setattr(vae_module, "_onednn_fits", spy)
    vae.decode(z).square().mean().backward()  # training: autograd needs the layers' own forward
    assert decisions and not any(decisions) and vae.decoder.conv_in.conv.weight.grad is not None
