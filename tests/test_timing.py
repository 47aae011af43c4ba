"""The frame rule: exactly ceil(seconds * 25) video frames, and audio tokens for every latent frame."""

import math

import pytest
import torch

from rap_core.config import get_preset
from rap_core.errors import RAPInputError
from rap_core.models.audio import build_wav2vec2, frame_windows
from rap_core.models.audio_projection import AudioProjection, pack_latent_windows
from rap_core.timing import covered_video_frames, latent_frame_count, samples_for_frames, video_frame_count

RATE, FPS, STRIDE = 16000, 25, 8
CASES = [(1.0, 25), (1.32, 33), (10.0, 250), (61.7, 1543)]


@pytest.mark.parametrize("seconds, frames", CASES)
def test_video_latent_and_covered_frames(seconds, frames):
    samples = round(seconds * RATE)
    assert video_frame_count(samples, RATE, FPS) == frames
    latents = latent_frame_count(frames, STRIDE)
    assert latents == 1 + math.ceil((frames - 1) / STRIDE)
    covered = covered_video_frames(latents, STRIDE)
    assert frames <= covered < frames + STRIDE
    assert latent_frame_count(covered, STRIDE) == latents


def test_frame_count_is_exact_where_floats_are_not():
    assert math.ceil(4480 / RATE * FPS) == 8  # 0.28 s: the float trap this module avoids
    assert video_frame_count(4480, RATE, FPS) == 7
    assert video_frame_count(21120, RATE, FPS) == 33
    assert video_frame_count(21121, RATE, FPS) == 34  # one sample more starts a new frame
    assert video_frame_count(1, RATE, FPS) == 1
    assert video_frame_count(44100 * 3 + 1, 44100, FPS) == 76


@pytest.mark.parametrize("rate, fps", [(16000, 25), (44100, 25), (22050, 30), (48000, 24)])
def test_samples_for_frames_is_the_longest_audio_with_that_many_frames(rate, fps):
    for frames in (1, 2, 33, 57, 1543):
        samples = samples_for_frames(frames, rate, fps)
        assert video_frame_count(samples, rate, fps) == frames
        assert video_frame_count(samples + 1, rate, fps) == frames + 1


def test_nonpositive_counts_are_rejected():
    with pytest.raises(RAPInputError, match="num_samples"):
        video_frame_count(0, RATE, FPS)
    with pytest.raises(RAPInputError, match="sample_rate"):
        video_frame_count(100, 0, FPS)
    with pytest.raises(RAPInputError, match="video_frames"):
        latent_frame_count(0, STRIDE)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = get_preset("tiny")
    encoder = build_wav2vec2(config.audio)
    projection = AudioProjection(config.audio, config.vae.temporal_stride, config.dit.dim).eval()
    return config, encoder, projection


@pytest.mark.parametrize("seconds, frames", CASES)
def test_audio_tokens_cover_every_latent_frame(tiny, seconds, frames):
    config, encoder, projection = tiny
    stride = config.vae.temporal_stride
    samples = round(seconds * RATE)
    latents = latent_frame_count(frames, stride)
    covered = covered_video_frames(latents, stride)
    padded = samples_for_frames(covered, RATE, FPS)  # silence after the speech fills the last latent frame
    audio = torch.nn.functional.pad(torch.randn(1, samples), (0, padded - samples))
    assert video_frame_count(padded, RATE, FPS) == covered
    with torch.no_grad():
        features = encoder(audio, covered)  # [1, covered, L, C]
        windows = frame_windows(features, config.audio.window)
        first, rest = pack_latent_windows(windows, stride)
        tokens = projection(windows)
    a = config.audio
    assert features.shape == (1, covered, a.num_hidden_layers, a.hidden_size)
    assert 1 + rest.shape[1] == latents
    assert rest.shape[2] == stride + a.window - 1
    assert tokens.shape == (1, latents, a.context_tokens, config.dit.dim)
    assert torch.isfinite(tokens).all()
