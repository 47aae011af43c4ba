"""The streaming pipeline on the tiny preset: continuity at every step, determinism, frame counts."""

import dataclasses
import math

import pytest
import torch

from rap_core import RAPInputError
from rap_core.loading.models import load_dit
from rap_core.pipeline import RAPPipeline
from rap_core.timing import covered_video_frames

SR = 16000


@pytest.fixture(scope="module")
def pipe():
    return RAPPipeline.from_preset("tiny")


def speech_like(seconds: float, seed: int = 0) -> torch.Tensor:
    """A deterministic voiced-ish signal: a gliding tone with a syllable-rate envelope plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(round(seconds * SR))) / SR
    tone = torch.sin(2 * math.pi * (140 + 60 * torch.sin(2 * math.pi * 0.7 * t)) * t)
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t).clamp(min=0)
    return 0.3 * tone * envelope + 0.01 * torch.randn(t.shape, generator=g)


def portrait(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(96, 80, 3, generator=g)  # [H, W, 3], deliberately not the model size


def record_steps(store):
    def progress(chunk, step, x):
        store.setdefault(chunk, {})[step] = x.clone()

    return progress


@pytest.mark.parametrize("n, chunk_latents", [(1, 3), (3, 5)])
def test_inherit_copies_previous_chunk_latents_at_every_step(pipe, n, chunk_latents):
    seen = {}
    pipe.generate(
        portrait(),
        speech_like(3.0),
        SR,
        continuity="inherit",
        inherit_latents=n,
        chunk_latents=chunk_latents,
        progress=record_steps(seen),
    )
    steps = pipe.config.sampling.steps
    assert len(seen) >= 3
    for k in range(1, len(seen)):
        for i in range(steps):
            assert torch.equal(seen[k][i][:, :, :n], seen[k - 1][i][:, :, -n:]), (k, i)
        # only the prefix is inherited: the rest of the chunk is its own
        assert not torch.equal(seen[k][0][:, :, n:], seen[k - 1][0][:, :, n:])


def test_motion_frames_prefix_is_the_reencoded_colour_matched_tail(pipe):
    seen, chunks = {}, []
    image, audio = portrait(), speech_like(2.5)
    for frames in pipe.stream(
        image,
        audio,
        SR,
        continuity="motion_frames",
        motion_latents=2,
        chunk_latents=4,
        color_correction=1.0,
        progress=record_steps(seen),
    ):
        chunks.append(frames)
    tail = covered_video_frames(2, pipe.vae.temporal_stride)  # 9 frames -> 2 latent frames
    assert len(chunks) >= 3
    for k in range(1, len(chunks)):
        # frames are colour-matched already; the tail of chunk k-1 is its last 9 emitted frames
        video = chunks[k - 1][-tail:].permute(3, 0, 1, 2)[None] * 2 - 1  # [1, 3, 9, H, W]
        expected = pipe.vae.encode(video)
        for i in range(pipe.config.sampling.steps):
            assert torch.allclose(seen[k][i][:, :, :2], expected, atol=1e-4), (k, i)


def test_same_seed_same_frames_other_seed_differs_and_stream_equals_generate(pipe):
    image, audio = portrait(), speech_like(1.7)
    a = pipe.generate(image, audio, SR, seed=7)
    b = pipe.generate(image, audio, SR, seed=7)
    c = pipe.generate(image, audio, SR, seed=8)
    streamed = torch.cat(list(pipe.stream(image, audio, SR, seed=7)))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(a, streamed)


@pytest.mark.parametrize("seconds", [0.04, 0.5, 1.32, 2.99])
@pytest.mark.parametrize("continuity", ["inherit", "motion_frames", "none"])
def test_frame_count_follows_the_audio(pipe, seconds, continuity):
    frames = pipe.generate(portrait(), speech_like(seconds), SR, continuity=continuity)
    assert frames.shape == (math.ceil(round(seconds * SR) * 25 / SR), 64, 64, 3)
    assert frames.dtype == torch.float32 and 0 <= frames.min() and frames.max() <= 1


def test_unknown_option_is_explained(pipe):
    with pytest.raises(RAPInputError, match="chunk_latent"):
        pipe.generate(portrait(), speech_like(0.5), SR, chunk_latent=4)
    with pytest.raises(RAPInputError, match="continuity"):
        pipe.generate(portrait(), speech_like(0.5), SR, continuity="smooth")


def test_motion_intensity_reaches_the_frames_of_a_model_that_has_it(pipe):
    config = pipe.config.replace(dit=dataclasses.replace(pipe.config.dit, intensity_control=True))
    dit = load_dit(pipe.dit.state_dict(), config)  # the tiny weights, the branch silent
    with torch.no_grad():
        dit.intensity.mlp[2].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))  # as if trained
    controlled = RAPPipeline(config, dit, pipe.vae, pipe.audio_encoder)
    image, audio = portrait(), speech_like(0.5)
    calm, lively = (controlled.generate(image, audio, SR, expression=v, head_motion=v) for v in (0.0, 1.0))
    assert calm.shape == lively.shape and (calm - lively).abs().max() > 1e-3
    assert torch.equal(controlled.generate(image, audio, SR), controlled.generate(image, audio, SR, expression=0.5))
    with pytest.raises(RAPInputError, match="head_motion must be in"):
        controlled.generate(image, audio, SR, head_motion=float("nan"))
    with pytest.raises(RAPInputError, match="no motion-intensity controls"):
        pipe.generate(image, audio, SR, expression=0.7)
