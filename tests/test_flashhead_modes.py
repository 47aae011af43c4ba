"""FlashHead-Lite's way of running, on the tiny networks: the three audio context modes keep the
frame rule, the streaming grid leads with silence, and every random draw comes from the talk's own
generator in the reference's order (tests/test_flashhead_golden.py pins the numbers to its code)."""

import dataclasses
import math

import pytest
import torch

from rap_core.audio_context import chunk_audio
from rap_core.config import get_preset
from rap_core.pipeline import RAPPipeline
from rap_core.talk import Talk, advance
from rap_core.timing import plan_chunks

SR = 16000
# FlashHead-Lite's sampling (the flashhead-lite preset's) on the tiny networks
LITE = dataclasses.replace(get_preset("flashhead-lite").sampling, color_correction=0.0)
LITE_OPTIONS = {f.name: getattr(LITE, f.name) for f in dataclasses.fields(LITE)}


@pytest.fixture(scope="module")
def pipe():
    return RAPPipeline.from_preset("tiny")


def speech(seconds: float) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    return (0.3 * torch.sin(2 * math.pi * 220 * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))).float()


def test_the_flashhead_preset_runs_as_its_authors_do():
    lite = get_preset("flashhead-lite").sampling
    assert (lite.audio_context, lite.schedule, lite.sample_posterior, lite.sampler) == (
        "reference-stream",
        "flashhead",
        True,
        "renoise",
    )
    for name in ("rap-1.3b", "demo", "tiny"):  # our own models keep their ways
        own = get_preset(name).sampling
        assert (own.audio_context, own.schedule, own.sample_posterior) == ("lookahead", "uniform", False)


@pytest.mark.parametrize("seconds", [0.5, 1.32, 3.0, 7.0])
def test_the_streaming_grid_leads_with_the_overlap_and_covers_every_frame_once(seconds):
    frames = -(-round(seconds * SR) * 25 // SR)
    chunks = plan_chunks(frames, 5, 2, 8, leads=True)
    assert chunks[0].start == -9 and all(chunk.emit_from == 9 for chunk in chunks)
    assert [chunk.start for chunk in chunks] == [24 * k - 9 for k in range(len(chunks))]
    emitted = [frame for chunk in chunks for frame in range(chunk.start + chunk.emit_from, chunk.start + chunk.emit_to)]
    assert emitted == list(range(frames))


@pytest.mark.parametrize("context", ["reference-stream", "reference-once", "lookahead"])
@pytest.mark.parametrize("seconds", [0.5, 1.32, 2.2])
def test_every_audio_context_gives_the_frame_rule(pipe, context, seconds):
    """ceil(seconds x 25) frames whatever the mode (the reference's once mode drops its last chunk,
    and gives nothing at all under 1.32 s)."""
    audio = speech(seconds)
    frames = pipe.generate(torch.rand(64, 64, 3), audio, SR, **(LITE_OPTIONS | {"audio_context": context}))
    assert frames.shape == (-(-audio.numel() * 25 // SR), 64, 64, 3)
    assert 0 <= frames.min() and frames.max() <= 1


def test_a_streamed_chunk_hears_the_8_s_ending_at_its_last_frame_and_no_future(pipe):
    config, audio = pipe.config, speech(3.0)
    stream = chunk_audio(pipe.audio_encoder, audio, config, LITE)
    windows = stream.windows(15, 48)  # chunk 1 of the grid: frames 15..47
    padded = torch.cat([torch.zeros(128000 - 48 * 640), audio[: 48 * 640]])  # silence before the speech
    encoded = pipe.audio_encoder(padded[None], 200)  # [1, 200, L, C]
    assert torch.allclose(windows[0, :, 2], encoded[0, -33:], atol=1e-6)  # each frame's own features
    assert torch.equal(windows[0, -1, 3], windows[0, -1, 2]) and torch.equal(windows[0, -1, 4], windows[0, -1, 2])
    longer = chunk_audio(pipe.audio_encoder, torch.cat([audio, speech(1.0)]), config, LITE)
    assert torch.equal(longer.windows(15, 48), windows)  # what follows the chunk is never heard


def test_once_hears_the_whole_padded_track_and_clamps_at_its_end(pipe):
    config, audio = pipe.config, speech(3.0)  # 48000 samples: padded to 21120 + 2 x 15360 = 51840, 81 frames
    once = chunk_audio(pipe.audio_encoder, audio, config, dataclasses.replace(LITE, audio_context="reference-once"))
    padded = torch.cat([audio, torch.zeros(51840 - 48000)])
    encoded = pipe.audio_encoder(padded[None], 81)[0]  # [81, L, C]
    assert torch.allclose(once.windows(48, 81)[0, :, 2], encoded[48:81], atol=1e-6)
    assert torch.equal(once.windows(48, 81)[0, -1, 4], once.windows(48, 81)[0, -1, 2])


def test_a_flashhead_talk_draws_everything_from_its_generator_in_the_references_order(pipe):
    """The reference latent's posterior sample, then per chunk the initial noise and one draw per
    step (the last included), then the motion latents' posterior sample; the global RNG is untouched."""
    picture = torch.rand(3, 64, 64) * 2 - 1
    audio = chunk_audio(pipe.audio_encoder, speech(2.0), pipe.config, LITE)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    talk, reference = Talk.start(LITE, pipe.dit, pipe.vae, picture, 7, audio.num_frames, audio.leads)
    for _ in range(2):
        advance(talk, pipe.dit, pipe.vae, audio, reference, decode=True)
    assert torch.equal(torch.get_rng_state(), global_state)

    replay = torch.Generator().manual_seed(7)
    latent = reference.latent.shape  # [1, C, 5, h, w]
    motion = (*latent[:2], 2, *latent[3:])
    for shape in [latent] + [latent] * (1 + LITE.steps) + [motion] + [latent] * (1 + LITE.steps) + [motion]:
        torch.randn(shape, generator=replay)
    assert torch.equal(talk.generator.get_state(), replay.get_state())
    mean = pipe.vae.encode(reference.image.repeat(1, 1, 33, 1, 1))
    assert not torch.allclose(reference.latent, mean)  # a sample, not the mean


def test_the_same_seed_gives_the_same_video_and_another_seed_another(pipe):
    image, audio = torch.rand(64, 64, 3), speech(1.5)
    first = pipe.generate(image, audio, SR, seed=3, **LITE_OPTIONS)
    assert torch.equal(first, pipe.generate(image, audio, SR, seed=3, **LITE_OPTIONS))
    assert not torch.equal(first, pipe.generate(image, audio, SR, seed=4, **LITE_OPTIONS))
