"""Face framing in the nodes: RAP Reference Encode frames the photo as the engine does (its `framing`
widget, the preset's by default) and RAP Paste Back puts the decoded frames back into the photo, so
the node chain gives RAPPipeline.generate(..., paste_back=True)'s frames."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from rap_core.media.container import read_image
from rap_core.media.normalise import prepare_image
from rap_core.pipeline import RAPPipeline

BUILTIN = "built-in"
PORTRAIT = Path(__file__).resolve().parents[2] / "assets" / "rap_portrait.png"
# the demo preset's sampling, spelled out as an old API workflow gives every widget
DEMO = dict(
    steps=4,
    cfg=1.0,
    shift=3.0,
    sampler="euler",
    continuity="inherit",
    continuity_n=1,
    chunk_latents=9,
    audio_attention="model",
    alpha_w=1.0,
    alpha_delta=0.0,
    color_correction=0.0,
    expression=0.5,
    head_motion=0.5,
    frames=0,
)


def run(nodes, node_id: str, **inputs):
    return nodes[node_id].execute(**inputs).result


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """The demo's cartoon portrait at 300 px, off-centre in a 523x701 grey photo -> [1, 523, 701, 3]."""
    canvas = torch.full((1, 523, 701, 3), 0.5)
    portrait = rearrange(read_image(PORTRAIT).float(), "h w c -> 1 c h w")
    small = F.interpolate(portrait, size=(300, 300), mode="bilinear", antialias=True)  # [1, 3, 300, 300]
    canvas[0, 180:480, 330:630] = rearrange(small[0], "c h w -> h w c")
    return canvas


@pytest.fixture(scope="module")
def demo(comfy):
    _, nodes = comfy
    (vae,) = run(nodes, "RAPVAELoader", vae_name=BUILTIN, preset="demo", weight_dtype="auto", download=False)
    return nodes, vae, RAPPipeline.from_preset("demo")


@pytest.mark.parametrize("framing", [None, "face", "centre"])
def test_reference_encode_frames_the_photo_as_the_engine(demo, photo, framing):
    nodes, vae, engine = demo
    widget = {} if framing is None else {"framing": framing}  # None: an old workflow without the widget
    reference, cropped, framed = run(nodes, "RAPReferenceEncode", vae=vae, image=photo, **widget)
    expected = engine.frame(photo[0], framing)
    assert framed.box == expected.box and cropped.shape == (1, 128, 128, 3)
    assert torch.equal(cropped[0], expected.crop())
    assert reference.face_box == expected.face_box()
    if framing == "centre":
        assert reference.face_box is None
        centred = rearrange(prepare_image(photo, 128, 128), "c h w -> h w c")  # FlashHead's default framing
        assert (cropped[0] * 2 - 1 - centred).abs().max() < 1e-6
    else:  # the demo preset frames the face
        assert reference.face_box is not None and framed.box[1] - framed.box[0] < 523


def test_node_chain_pastes_back_the_engines_frames(comfy, demo, photo):
    _, nodes = comfy
    _, vae, engine = demo
    (model,) = run(
        nodes, "RAPModelLoader", ckpt_name=BUILTIN, preset="demo", weight_dtype="auto", attention="sdpa", download=False
    )
    (encoder,) = run(nodes, "RAPAudioEncoderLoader", encoder=BUILTIN, preset="demo", download=False)
    g = torch.Generator().manual_seed(2)
    audio = {"waveform": 0.1 * torch.randn(1, 1, 16000, generator=g), "sample_rate": 16000}
    embeds, _ = run(nodes, "RAPAudioEncode", audio_encoder=encoder, audio=audio, frames=0)
    reference, _, framing = run(nodes, "RAPReferenceEncode", vae=vae, image=photo)
    (latents,) = run(
        nodes, "RAPSampler", model=model, vae=vae, audio_embeds=embeds, reference=reference, seed=5, **DEMO
    )
    images = run(nodes, "RAPDecode", vae=vae, latents=latents)[0]
    (pasted,) = run(nodes, "RAPPasteBack", images=images, framing=framing)
    expected = engine.generate(photo[0], audio["waveform"][0], 16000, seed=5, paste_back=True)
    assert pasted.shape == (25, 523, 701, 3) == expected.shape
    assert (pasted - expected).abs().max() < 1e-4
