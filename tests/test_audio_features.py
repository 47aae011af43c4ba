"""Chunk-independent audio features: any chunking of the video gives the whole-file features
and audio tokens, each frame reads a fixed stretch of audio, and memory stays bounded."""

import math
from dataclasses import replace

import pytest
import torch

from rap_core.audio_features import AudioFeatures
from rap_core.config import get_preset
from rap_core.errors import RAPInputError
from rap_core.models.audio import build_wav2vec2, frame_windows
from rap_core.models.audio_projection import AudioProjection

CONFIG = get_preset("tiny")
RATE, FPS = CONFIG.audio.sample_rate, CONFIG.fps
HOP = RATE // FPS  # 640 samples per video frame


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_wav2vec2(CONFIG.audio)


def speech(seconds: float, seed: int = 0) -> torch.Tensor:
    """A rising chirp with a slow loudness wobble plus noise: [round(seconds * 16000)]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * RATE)) / RATE
    chirp = torch.sin(2 * math.pi * (100 * t + 40 * t**2)) * (0.6 + 0.4 * torch.sin(2 * math.pi * 0.7 * t))
    return chirp + 0.1 * torch.randn(t.numel(), generator=g)


def chunk_starts(num_frames: int, clip: int, overlap: int) -> list[int]:
    """Chunk starts as the pipeline steps them: clips of `clip` frames sharing `overlap` frames,
    until one reaches the last frame."""
    starts = [0]
    while starts[-1] + clip < num_frames:
        starts.append(starts[-1] + clip - overlap)
    return starts


def test_any_chunking_gives_the_whole_file_windows_and_tokens(encoder):
    audio = speech(7.03)  # 176 video frames
    num_frames = AudioFeatures(encoder, audio, CONFIG).num_frames
    whole_clip = 1 + 8 * -(-(num_frames - 1) // 8)
    plans = [(17, 1), (33, 9), (whole_clip, 0)]  # (frames per chunk, overlap); the last is one chunk
    end = max(start + clip for clip, overlap in plans for start in chunk_starts(num_frames, clip, overlap))
    whole = AudioFeatures(encoder, audio, CONFIG).encode_all(end + 2)  # [1, end + 2, L, C]
    reference = frame_windows(whole)[:, :end]  # [1, end, 5, L, C]
    torch.manual_seed(1)
    projection = AudioProjection(CONFIG.audio, stride=8, dim=32)
    with torch.no_grad():
        for clip, overlap in plans:
            features = AudioFeatures(encoder, audio, CONFIG)
            for start in chunk_starts(num_frames, clip, overlap):
                windows = features.windows(start, start + clip)
                expected = reference[:, start : start + clip]
                assert windows.shape == expected.shape == (1, clip, 5, 2, 16)
                torch.testing.assert_close(windows, expected, atol=1e-5, rtol=0)
                torch.testing.assert_close(projection(windows), projection(expected), atol=1e-5, rtol=0)


def test_lazy_frames_equal_one_batched_encoder_call(encoder):
    audio = speech(3.5, seed=2)
    features = AudioFeatures(encoder, audio, CONFIG)
    lazy = torch.cat([features.frames(start, start + 10) for start in range(0, features.num_frames, 10)], dim=1)
    batched = AudioFeatures(encoder, audio, CONFIG).encode_all()  # 4 segments: one encoder call
    assert batched.shape == (1, features.num_frames, 2, 16)
    torch.testing.assert_close(lazy[:, : features.num_frames], batched, atol=1e-5, rtol=0)


def test_a_frame_reads_exactly_its_segments_span_of_audio(encoder):
    audio = speech(15.0, seed=3)
    frame = 13 * 25 + 24  # last frame of segment 13: it sees the most past audio (9 s)
    span = (13 * 25 - 200) * HOP, (14 * 25 + 8) * HOP  # 8 s before the segment, 8 frames after it

    def features_after_changing(low: int, high: int) -> torch.Tensor:
        changed = audio.clone()
        changed[low:high] = torch.randn(high - low, generator=torch.Generator().manual_seed(4))
        return AudioFeatures(encoder, changed, CONFIG).frames(frame, frame + 1)

    original = AudioFeatures(encoder, audio, CONFIG).frames(frame, frame + 1)
    near = frame * HOP - RATE // 4, frame * HOP + RATE // 4  # 0.5 s around the frame
    assert (features_after_changing(*near) - original).abs().max() > 1e-2
    assert (features_after_changing(span[0], span[0] + HOP) - original).abs().max() > 1e-4
    assert (features_after_changing(span[1] - HOP, span[1]) - original).abs().max() > 1e-4
    twelve_seconds_before = frame * HOP - 12 * RATE
    assert torch.equal(features_after_changing(twelve_seconds_before - HOP, twelve_seconds_before + HOP), original)
    assert torch.equal(features_after_changing(0, span[0]), original)
    assert torch.equal(features_after_changing(span[1], audio.numel()), original)


def test_walking_a_minute_of_audio_encodes_each_segment_once_and_drops_the_segments_behind(encoder):
    features = AudioFeatures(encoder, speech(60.0, seed=5), CONFIG)
    assert features.num_frames == 1500
    encoded = []  # segments per encoder call
    hook = encoder.register_forward_hook(lambda module, args, output: encoded.append(args[0].shape[0]))
    try:
        starts = chunk_starts(features.num_frames, 33, 9)
        for start in starts:
            windows = features.windows(start, start + 33)
            assert windows.shape == (1, 33, 5, 2, 16)
        walked = -(-(starts[-1] + 33 + 2) // 25)  # the segments the walk reads, through the last window's margin
        assert sum(encoded) == walked  # each encoded once
        features.windows(starts[-1], starts[-1] + 33)
        assert sum(encoded) == walked  # the last chunk's segments are still cached
        features.frames(0, 1)
        assert sum(encoded) == walked + 1  # segment 0 was dropped behind the walk: it is encoded again
    finally:
        hook.remove()


def test_frames_past_the_end_are_the_features_of_silence(encoder):
    audio = speech(1.32, seed=6)  # 21120 samples
    features = AudioFeatures(encoder, audio, CONFIG)
    assert features.num_frames == 33
    assert AudioFeatures(encoder, audio[:-1], CONFIG).num_frames == 33
    assert AudioFeatures(encoder, torch.cat([audio, audio[:1]]), CONFIG).num_frames == 34
    past = features.frames(30, 40)
    padded = AudioFeatures(encoder, torch.cat([audio, torch.zeros(7 * HOP)]), CONFIG)
    assert padded.num_frames == 40
    assert past.shape == (1, 10, 2, 16)
    assert torch.equal(past, padded.frames(30, 40))
    assert torch.isfinite(features.windows(28, 45)).all() and torch.isfinite(features.frames(200, 201)).all()


def test_bad_inputs_say_what_to_fix(encoder):
    audio = speech(1.0)
    with pytest.raises(RAPInputError, match="audio_to_mono"):
        AudioFeatures(encoder, audio[None], CONFIG)
    with pytest.raises(RAPInputError, match="fps=0"):
        AudioFeatures(encoder, audio, CONFIG.replace(fps=0))
    features = AudioFeatures(encoder, audio, CONFIG)
    with pytest.raises(RAPInputError, match="start < end"):
        features.frames(5, 5)
    even = AudioFeatures(encoder, audio, CONFIG.replace(audio=replace(CONFIG.audio, window=4)))
    with pytest.raises(RAPInputError, match="odd"):
        even.windows(0, 5)
