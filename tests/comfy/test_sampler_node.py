"""RAP Sampler's widgets over the model's preset, inside ComfyUI's own modules (no server): left at
their schema defaults, the loaders, encoders, sampler and decoder give the preset's recommended
settings and the engine's frames; set, a widget overrides the preset; previews come at the frames' size."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import ImageOps

from rap_core.config import get_preset
from rap_core.pipeline import RAPPipeline

BUILTIN = "built-in"
LOADERS = {
    "model": ("RAPModelLoader", "ckpt_name"),
    "vae": ("RAPVAELoader", "vae_name"),
    "encoder": ("RAPAudioEncoderLoader", "encoder"),
}


def run(nodes, node_id: str, **inputs):
    """The node's outputs, its widgets at their schema defaults but for `inputs`."""
    node = nodes[node_id]
    defaults = {i.id: i.default for i in node.define_schema().inputs if getattr(i, "default", None) is not None}
    return node.execute(**defaults | inputs).result


def graph(nodes, preset: str) -> dict:
    """The built-in networks of `preset`, 1 s of 16 kHz noise and a random picture at the model's size, encoded
    with every widget at its default. The picture has no face, so any framing keeps it whole."""
    config = get_preset(preset)
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, config.height, config.width, 3, generator=g)
    audio = {"waveform": 0.1 * torch.randn(1, 1, 16000, generator=g), "sample_rate": 16000}
    net = {kind: run(nodes, node, **{file: BUILTIN, "preset": preset})[0] for kind, (node, file) in LOADERS.items()}
    embeds = run(nodes, "RAPAudioEncode", audio_encoder=net["encoder"], audio=audio)[0]
    reference = run(nodes, "RAPReferenceEncode", vae=net["vae"], image=image)[0]
    return dict(net, image=image, audio=audio, embeds=embeds, reference=reference)


def sample(nodes, talk: dict, **widgets):
    """RAP Sampler's latents and RAP Decode's frames, the sampler's widgets at their defaults but for `widgets`."""
    (latents,) = run(
        nodes,
        "RAPSampler",
        model=talk["model"],
        vae=talk["vae"],
        audio_embeds=talk["embeds"],
        reference=talk["reference"],
        **widgets,
    )
    return latents, run(nodes, "RAPDecode", vae=talk["vae"], latents=latents)[0]


@pytest.fixture(scope="module")
def tiny(comfy) -> dict:
    return graph(comfy[1], "tiny")


@pytest.mark.parametrize("preset", ["demo", "tiny"])
def test_a_workflow_left_at_its_defaults_runs_the_presets_recommended_settings(comfy, preset):
    _, nodes = comfy
    talk = graph(nodes, preset)
    latents, images = sample(nodes, talk)
    recommended, settings = get_preset(preset).sampling, latents.talk.sampling
    differ = {
        field.name: (getattr(settings, field.name), getattr(recommended, field.name))
        for field in dataclasses.fields(recommended)
        if field.name != "audio_context" and getattr(settings, field.name) != getattr(recommended, field.name)
    }
    assert differ == {}  # field: (the sampler's, the preset's)
    assert settings.audio_context == talk["embeds"].features.context
    engine = RAPPipeline.from_preset(preset).generate(talk["image"], talk["audio"]["waveform"][0], 16000)
    assert images.shape == engine.shape == (25, get_preset(preset).height, get_preset(preset).width, 3)
    assert (engine - images).abs().max() < 1e-4


def test_set_widgets_override_the_preset(comfy, tiny):
    _, nodes = comfy
    set_ = dict(
        steps=3,
        cfg=2.0,
        shift=4.0,
        sampler="renoise",
        continuity="motion_frames",
        continuity_n=2,
        chunk_latents=4,
        color_correction=0.5,
    )
    latents, images = sample(nodes, tiny, **set_)
    sampling = latents.talk.sampling
    assert (
        sampling.steps,
        sampling.cfg_scale,
        sampling.shift,
        sampling.sampler,
        sampling.continuity,
        sampling.motion_latents,
        sampling.chunk_latents,
        sampling.color_correction,
    ) == tuple(set_.values())
    assert images.shape[0] == 25


def test_hybrid_alphas_apply_only_with_hybrid_audio_attention(comfy, tiny):
    """tiny's DiT is hybrid: with audio_attention "model" its trained alphas hold whatever alpha_w and
    alpha_delta say; with "hybrid" they are the widgets'."""
    _, nodes = comfy
    _, default = sample(nodes, tiny)
    latents, model = sample(nodes, tiny, audio_attention="model", alpha_w=-2.0, alpha_delta=1.0)
    assert (latents.talk.sampling.alpha_w, latents.talk.sampling.alpha_delta) == (None, None)  # the DiT's own
    assert torch.equal(model, default)
    latents, hybrid = sample(nodes, tiny, audio_attention="hybrid", alpha_w=-2.0, alpha_delta=1.0)
    assert (latents.talk.sampling.alpha_w, latents.talk.sampling.alpha_delta) == (-2.0, 1.0)
    assert (hybrid - default).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("widget", "value", "message"),
    [
        ("cfg", 0.5, r"cfg 0\.5 is below 1: set 1 \(no guidance\) or more, or 0 for the model's preset \(1\)"),
        (
            "color_correction",
            -0.5,
            r"color_correction -0\.5 is below 0: set 0 \(off\) to 1, or -1 for the model's preset",
        ),
    ],
)
def test_values_between_the_preset_marker_and_the_range_are_refused(comfy, tiny, widget, value, message):
    _, nodes = comfy
    with pytest.raises(ValueError, match=message) as refused:  # the pack's own rap_core, imported by ComfyUI
        sample(nodes, tiny, **{widget: value})
    assert type(refused.value).__name__ == "RAPInputError"


def test_previews_come_at_the_frames_size(comfy, tiny):
    """ComfyUI's server scales a preview to fit its third item (PIL ImageOps.contain, up or down):
    the sampler's (motion frames) and the decoder's previews stay 64x64 for tiny's 64x64 frames."""
    from comfy import utils

    _, nodes = comfy
    previews, hook = [], utils.PROGRESS_BAR_HOOK
    utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: previews.append(preview))
    try:
        latents, _ = sample(nodes, tiny, continuity="motion_frames")
    finally:
        utils.set_progress_bar_global_hook(hook)
    sent = [ImageOps.contain(image, (size, size)).size for _, image, size in filter(None, previews)]
    assert len(sent) == 2 * len(latents.latents) and set(sent) == {(64, 64)}  # each chunk: sampler and decoder


def test_loaders_set_for_different_presets_give_one_error_naming_all_three(comfy, tiny):
    _, nodes = comfy
    demo_model = run(nodes, "RAPModelLoader", ckpt_name=BUILTIN, preset="demo")[0]
    with pytest.raises(ValueError) as error:  # the pack's RAPInputError, imported as ComfyUI imports the pack
        run(
            nodes,
            "RAPSampler",
            model=demo_model,
            vae=tiny["vae"],
            audio_embeds=tiny["embeds"],
            reference=tiny["reference"],
        )
    message = str(error.value)
    assert type(error.value).__name__ == "RAPInputError"
    assert "RAP Model Loader 'demo', RAP VAE Loader 'tiny', RAP Audio Encoder Loader 'tiny'" in message
    assert "Set all three to 'demo', or to auto" in message
