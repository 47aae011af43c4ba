"""The demo preset's log-mel audio encoder: on the video grid, loudness-following, pipeline-ready."""

import math
from dataclasses import replace

import pytest
import torch

from rap_core.audio_features import AudioFeatures
from rap_core.config import get_preset
from rap_core.errors import RAPInputError
from rap_core.loading.random_weights import random_audio_encoder, random_dit, random_vae
from rap_core.models.mel import MelEncoder
from rap_core.pipeline import RAPPipeline

TINY = get_preset("tiny")
MEL = replace(TINY, name="tiny-mel", audio=replace(TINY.audio, encoder="mel", hidden_size=16, num_hidden_layers=1))


def burst(seconds=2.0, frames=(10, 15), rate=16000):
    """Silence with a 220 Hz tone over video frames [10, 15) (640 samples per frame)."""
    audio = torch.zeros(int(seconds * rate))
    t = torch.arange(frames[0] * 640, frames[1] * 640)
    audio[t] = 0.5 * torch.sin(2 * math.pi * 220 * t / rate)
    return audio


def test_features_are_on_the_video_grid_and_follow_loudness():
    encoder = MelEncoder(MEL.audio)
    features = encoder(burst()[None], 50)  # [1, 50, 1, 16]
    assert features.shape == (1, 50, 1, 16)
    level = features[0, :, 0].mean(-1)  # [50] mean band level per frame
    assert level[10:15].min() > level[:9].max() + 0.5  # the tone frames stand out
    assert torch.allclose(level[:8], torch.full((8,), -1.0), atol=1e-3)  # silence sits at the floor
    assert level[17:].max() < level[10:15].min()


def test_random_audio_encoder_follows_the_preset_and_rejects_short_audio():
    assert isinstance(random_audio_encoder(MEL), MelEncoder)
    with pytest.raises(RAPInputError, match="at least 400"):
        MelEncoder(MEL.audio)(torch.zeros(1, 100), 1)


def test_pipeline_runs_with_the_mel_encoder():
    pipe = RAPPipeline(MEL, random_dit(MEL), random_vae(MEL), random_audio_encoder(MEL))
    frames = pipe.generate(torch.rand(64, 64, 3), burst(1.32), 16000, seed=0)
    assert frames.shape == (33, 64, 64, 3)
    features = AudioFeatures(pipe.audio_encoder, burst(1.32), MEL).encode_all()  # [1, 33, 1, 16]
    assert torch.equal(features, AudioFeatures(pipe.audio_encoder, burst(1.32), MEL).frames(0, 33))
