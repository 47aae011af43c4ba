"""RAP Sampler and RAP Decode in ComfyUI's own modules (no server): their previews come at the frames'
size."""

from __future__ import annotations

import pytest
import torch
from PIL import ImageOps

from rap_core.config import get_preset

BUILTIN = "built-in"
LOADERS = {"model": ("RAPModelLoader", "ckpt_name"), "vae": ("RAPVAELoader", "vae_name"),
           "encoder": ("RAPAudioEncoderLoader", "encoder")}


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
    latents, = run(nodes, "RAPSampler", model=talk["model"], vae=talk["vae"], audio_embeds=talk["embeds"],
                   reference=talk["reference"], **widgets)
    return latents, run(nodes, "RAPDecode", vae=talk["vae"], latents=latents)[0]


@pytest.fixture(scope="module")
def tiny(comfy) -> dict:
    return graph(comfy[1], "tiny")


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
