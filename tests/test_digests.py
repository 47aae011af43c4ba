"""The engine's outputs pinned bit for bit (tests/plugins/digests.py): the pipeline on every preset's
sampling and every continuity mode, guidance, both samplers, the audio contexts and attention modes,
the demo model with its face and intensity branches, paste-back, the live talk and training steps."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from digests import check, digest
from safetensors.torch import load_file

from rap_core.config import get_preset
from rap_core.eval.run import HELDOUT_IDENTITIES
from rap_core.live import LiveTalk, LiveVideo, SegmentDone
from rap_core.loading.random_weights import random_audio_encoder, random_vae
from rap_core.pipeline import RAPPipeline
from rap_core.synthetic import portrait as synthetic_portrait
from rap_core.synthetic import sample_identity
from rap_core.training.data import ClipSet, encode_clip, save_clips
from rap_core.training.trainer import TrainConfig, train

SR = 16000


def options_of(preset: str, **changes) -> dict:
    """A preset's whole SamplingConfig as pipeline options, with `changes`."""
    sampling = dataclasses.replace(get_preset(preset).sampling, **changes)
    return {field.name: getattr(sampling, field.name) for field in dataclasses.fields(sampling)}


# case -> options of the tiny networks' pipeline (2.2 s of speech, seed 3, a 96x80 random portrait)
TINY_CASES = {
    "tiny": {},
    "tiny-motion_frames": {"continuity": "motion_frames", "motion_latents": 1, "color_correction": 0.5},
    "tiny-none": {"continuity": "none"},
    "tiny-inherit2-chunk5": {"inherit_latents": 2, "chunk_latents": 5},
    "tiny-cfg2-renoise": {"cfg_scale": 2.0, "sampler": "renoise", "steps": 3},
    "tiny-window-attention": {"audio_mode": "window"},
    "tiny-hybrid-alphas": {"audio_mode": "hybrid", "alpha_w": 0.5, "alpha_delta": 0.2},
    "tiny-explicit-timesteps": {"timesteps": (1000.0, 700.0, 300.0), "steps": 3},
    "flashhead-lite-sampling": options_of("flashhead-lite"),
    "flashhead-lite-sampling-once": options_of("flashhead-lite", audio_context="reference-once"),
    "flashhead-lite-sampling-lookahead": options_of("flashhead-lite", audio_context="lookahead"),
    "rap-1.3b-sampling": options_of("rap-1.3b"),
    "demo-sampling": options_of("demo"),
}


def speech(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * SR)) / SR
    tone = torch.sin(2 * math.pi * (140 + 60 * torch.sin(2 * math.pi * 0.7 * t)) * t)
    return 0.3 * tone * (0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t).clamp(min=0)) + 0.01 * torch.randn(
        t.shape, generator=g
    )


def random_portrait() -> torch.Tensor:
    return torch.rand(96, 80, 3, generator=torch.Generator().manual_seed(1))  # [H, W, 3]


@pytest.fixture(scope="module")
def tiny():
    return RAPPipeline.from_preset("tiny")


@pytest.fixture(scope="module")
def demo():
    return RAPPipeline.from_preset("demo")


@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_pipeline(tiny, case):
    frames = tiny.generate(random_portrait(), speech(2.2), SR, seed=3, framing="centre", **TINY_CASES[case])
    check("pipeline", case, digest(frames))


def test_pipeline_paste_back(tiny):
    frames = tiny.generate(random_portrait(), speech(1.0), SR, seed=3, framing=(10, 74, 8, 72), paste_back=True)
    check("pipeline", "tiny-paste-back", digest(frames))


@pytest.mark.parametrize(
    "case, options",
    [
        ("demo", {}),
        ("demo-intensity-cfg", {"expression": 0.8, "head_motion": 0.2, "cfg_scale": 1.5}),
        ("demo-motion_frames", {"continuity": "motion_frames", "motion_latents": 2, "color_correction": 1.0}),
    ],
)
def test_demo_model(demo, case, options):
    """The trained demo model on a synthetic portrait, framed around its detected face (identity branch)."""
    picture = synthetic_portrait(sample_identity(HELDOUT_IDENTITIES + 3), 160)  # [H, W, 3], larger than the model
    frames = demo.generate(picture, speech(1.5, seed=2), SR, seed=5, **options)
    check("pipeline", case, digest(frames))


def test_live_talk(tiny):
    talk = LiveTalk(tiny, random_portrait(), SR, seed=7, framing="centre")
    audio = speech(1.6)
    for start in range(0, audio.numel(), 4000):
        talk.push(audio[start : start + 4000])
    talk.end()
    frames, events = [], []
    while not any(isinstance(event, SegmentDone) for event in events):
        events = talk.poll()
        assert events, "the ended utterance stopped before its SegmentDone"
        frames += [event.frames for event in events if isinstance(event, LiveVideo)]
    check("live", "tiny", digest(torch.cat(frames)))


def test_training_steps(tmp_path):
    """Four training steps of the tiny DiT on two encoded random clips: the weights they end with."""
    config = get_preset("tiny")
    vae, encoder = random_vae(config), random_audio_encoder(config)
    g = torch.Generator().manual_seed(0)
    face, mouth = torch.zeros(64, 64), torch.zeros(64, 64)
    face[20:52, 16:48], mouth[40:48, 24:40] = 1, 1
    clips = []
    for index in range(2):
        frames = torch.rand(60, 64, 64, 3, generator=g)
        clips.append(
            encode_clip(
                config,
                vae,
                encoder,
                frames,
                0.1 * torch.randn(60 * 640, generator=g),
                frames[0],
                face,
                mouth,
                torch.tensor([0.1 * index, 0.3]),
            )
        )
    save_clips(tmp_path / "clips", clips)
    train(
        config,
        ClipSet(tmp_path / "clips"),
        tmp_path / "run",
        TrainConfig(steps=4, batch_size=2, lr=1e-3),
        progress=False,
    )
    weights = load_file(tmp_path / "run" / "dit.safetensors")
    check("training", "tiny-4-steps", digest(*(weights[name] for name in sorted(weights))))
