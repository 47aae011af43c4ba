"""The nodes' outputs pinned bit for bit (tests/plugins/digests.py), inside ComfyUI's own modules: the
chain loader -> encoders -> sampler -> decode -> paste back on every continuity mode, a talk split over
two samplers, guidance with renoise, and the demo model at its preset's settings."""

from __future__ import annotations

import pytest
import torch
from digests import check, digest

BUILTIN = "built-in"


def run(nodes, node_id: str, **inputs):
    """The node's outputs, its widgets at their schema defaults but for `inputs`."""
    node = nodes[node_id]
    defaults = {i.id: i.default for i in node.define_schema().inputs if getattr(i, "default", None) is not None}
    return node.execute(**defaults | inputs).result


def encoded(nodes, preset: str, image: torch.Tensor) -> dict:
    """`preset`'s built-in networks, 2.3 s of 44.1 kHz stereo noise and `image`, encoded."""
    net = {
        name: run(nodes, node, **{widget: BUILTIN, "preset": preset})[0]
        for name, (node, widget) in {
            "model": ("RAPModelLoader", "ckpt_name"),
            "vae": ("RAPVAELoader", "vae_name"),
            "encoder": ("RAPAudioEncoderLoader", "encoder"),
        }.items()
    }
    g = torch.Generator().manual_seed(0)
    audio = {"waveform": 0.1 * torch.randn(1, 2, int(44100 * 2.3), generator=g), "sample_rate": 44100}
    embeds, _ = run(nodes, "RAPAudioEncode", audio_encoder=net["encoder"], audio=audio)
    reference, _, framing = run(nodes, "RAPReferenceEncode", vae=net["vae"], image=image, framing="centre")
    return dict(net, embeds=embeds, reference=reference, framing=framing)


def sample(nodes, talk: dict, **widgets):
    (latents,) = run(
        nodes,
        "RAPSampler",
        model=talk["model"],
        vae=talk["vae"],
        audio_embeds=talk["embeds"],
        reference=talk["reference"],
        seed=5,
        **widgets,
    )
    return latents


def decoded(nodes, talk: dict, latents) -> tuple[torch.Tensor, torch.Tensor]:
    images, _, audio = run(nodes, "RAPDecode", vae=talk["vae"], latents=latents)
    return images, audio["waveform"]


@pytest.fixture(scope="module")
def tiny(comfy) -> dict:
    return encoded(comfy[1], "tiny", torch.rand(1, 80, 64, 3, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize(
    "case, widgets",
    [
        ("tiny", {}),
        ("tiny-motion_frames", {"continuity": "motion_frames", "color_correction": 0.5}),
        ("tiny-none", {"continuity": "none"}),
        ("tiny-cfg2-renoise-chunk4", {"cfg": 2.0, "sampler": "renoise", "steps": 3, "chunk_latents": 4}),
        ("tiny-hybrid", {"audio_attention": "hybrid", "alpha_w": 0.5, "alpha_delta": 0.25}),
    ],
)
def test_sampler_and_decode(comfy, tiny, case, widgets):
    images, waveform = decoded(comfy[1], tiny, sample(comfy[1], tiny, **widgets))
    check("nodes", case, digest(images, waveform))


@pytest.mark.parametrize("continuity", ["inherit", "motion_frames"])
def test_split_talk(comfy, tiny, continuity):
    nodes = comfy[1]
    first = sample(nodes, tiny, continuity=continuity, frames=20)
    second = sample(nodes, tiny, continuity=continuity, previous=first)
    check("nodes", f"tiny-split-{continuity}", digest(*decoded(nodes, tiny, first), *decoded(nodes, tiny, second)))


def test_paste_back(comfy, tiny):
    nodes = comfy[1]
    images, _ = decoded(nodes, tiny, sample(nodes, tiny, frames=10))
    (pasted,) = run(nodes, "RAPPasteBack", images=images, framing=tiny["framing"])
    check("nodes", "tiny-paste-back", digest(pasted))


def test_demo_at_its_preset(comfy):
    nodes = comfy[1]
    talk = encoded(nodes, "demo", torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(2)))
    check("nodes", "demo", digest(*decoded(nodes, talk, sample(nodes, talk))))
