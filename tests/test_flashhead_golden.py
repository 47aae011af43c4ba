"""flashhead-lite pinned to numbers produced by SoulX-FlashHead's own code (commit 12467ce, run on a
CPU; tests/golden/flashhead/README.md says how): audio windows in both of its modes, chunk grids,
schedules, crop boxes and the order of its random draws."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rap_core.audio_context import chunk_audio
from rap_core.config import get_preset
from rap_core.loading.models import load_wav2vec2
from rap_core.media.normalise import cover_and_crop
from rap_core.models.audio import frame_windows
from rap_core.pipeline import RAPPipeline
from rap_core.sampling.schedule import flow_timesteps
from rap_core.talk import Talk, advance
from rap_core.timing import plan_chunks

GOLDEN = Path(__file__).parent / "golden" / "flashhead"
LITE = get_preset("flashhead-lite")
SR, FPS = 16000, 25


def golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def signal(seconds: float) -> torch.Tensor:
    """The golden runs' test signal (README): float64 sines, then float32."""
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    wave = 0.3 * torch.sin(2 * math.pi * 220 * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    return (wave + 0.1 * torch.sin(2 * math.pi * 1234 * t)).float()


@pytest.fixture(scope="module")
def encoder():
    return load_wav2vec2(GOLDEN / "wav2vec2-tiny")


@pytest.fixture(scope="module")
def windows():
    return load_file(GOLDEN / "audio_windows.safetensors")


def sampling(context: str):
    return dataclasses.replace(LITE.sampling, audio_context=context)


def test_streamed_windows_equal_the_references_for_every_chunk(encoder, windows):
    stream = chunk_audio(encoder, signal(3.0), LITE, sampling("reference-stream"))
    chunks = plan_chunks(stream.num_frames, 5, 2, 8, leads=True)
    assert len(chunks) == 4 == sum(key.startswith("stream.chunk") for key in windows)
    for chunk in chunks:  # first, middle and last
        ours = stream.windows(chunk.start, chunk.start + 33)[0]  # [33, 5, L, C]
        torch.testing.assert_close(ours, windows[f"stream.chunk{chunk.index}"], atol=2e-5, rtol=1e-4)
    positions = torch.arange(200, dtype=torch.float32).view(1, 200, 1, 1)  # the cache's frame indices as features
    assert torch.equal(frame_windows(positions)[0, -33:, :, 0, 0].long(), windows["stream.indices"])


def test_once_windows_equal_the_references_and_go_on_past_its_last_chunk(encoder, windows):
    once = chunk_audio(encoder, signal(3.0), LITE, sampling("reference-once"))
    assert once.features.shape[0] == windows["once.windows"].shape[0] == 81  # the same padding
    torch.testing.assert_close(frame_windows(once.features[None])[0], windows["once.windows"], atol=2e-5, rtol=1e-4)
    chunks = plan_chunks(once.num_frames, 5, 2, 8)
    for chunk in chunks[:2]:
        torch.testing.assert_close(
            once.windows(chunk.start, chunk.start + 33)[0], windows[f"once.chunk{chunk.index}"], atol=2e-5, rtol=1e-4
        )
    assert len(chunks) == 3 and chunks[2].start + 33 == 81  # the chunk the reference drops covers frames 57..74
    positions = torch.arange(81, dtype=torch.float32).view(1, 81, 1, 1)
    assert torch.equal(frame_windows(positions)[0, :, :, 0, 0].long(), windows["once.indices"])


@pytest.mark.parametrize("seconds", ["0.5", "1.32", "3.0", "7.0"])
def test_chunk_grids_are_the_references_without_its_length_bugs(encoder, seconds):
    grid = golden("chunk_grid.json")["durations"][seconds]
    frames = -(-grid["stream"]["samples"] * FPS // SR)  # ceil(seconds x 25), exactly
    stream = plan_chunks(frames, 5, 2, 8, leads=True)
    reference = grid["stream"]["chunks"]
    assert len(stream) == len(reference)  # as many chunks; the reference pads the last one with silence
    for ours, theirs in zip(stream, reference):
        assert [ours.start, ours.start + 33] == theirs["window_clip_frames"]
        assert ours.emit_from == theirs["kept_frames"][0] == 9
        first, end = theirs["output_frames_range"]
        assert ours.start + ours.emit_from == first and ours.start + ours.emit_to == min(end, frames)
    assert grid["stream"]["output_frames"] >= frames

    once, reference = plan_chunks(frames, 5, 2, 8), grid["once"]["chunks"]
    assert len(once) >= len(reference)  # the reference drops the last chunk (all of them under 1.32 s)
    for ours, theirs in zip(once, reference):
        assert [ours.start, ours.start + 33] == theirs["embedding_frames"]
    audio = chunk_audio(encoder, signal(float(seconds)), LITE, sampling("reference-once"))
    assert audio.features.shape[0] == grid["once"]["embedding_frames_total"]  # padded as the reference pads
    assert once[-1].start + 33 <= audio.features.shape[0] and sum(c.emit_to - c.emit_from for c in once) == frames


@pytest.mark.parametrize("steps", ["2", "4", "8", "30"])
def test_schedules_are_the_references(steps):
    expected = torch.tensor(golden("schedule.json")["steps"][steps]["timesteps"], dtype=torch.float64)
    assert torch.equal(flow_timesteps(int(steps), 5.0, schedule="flashhead"), expected)


def test_crop_boxes_are_the_references():
    for case in golden("crop.json")["cases"]:
        (in_h, in_w), target = case["input_hw"], case["target"] if "target" in case else (512, 512)
        cover, top_left = cover_and_crop(in_h, in_w, *target)
        assert (list(cover), list(top_left)) == (case["resized_hw"], case["crop_top_left"]), case["input_hw"]


def test_a_talk_draws_in_the_references_order(monkeypatch):
    """Latent frames of each draw, in order: the reference latent, per chunk the initial noise and one
    draw per step (the last too), the motion latents. Ours all come from the talk's generator."""
    reference_draws = [entry for entry in golden("noise.json")["modes"]["stream"] if entry["function"] == "torch.randn"]
    pipe = RAPPipeline.from_preset("tiny")
    sampling = dataclasses.replace(LITE.sampling, color_correction=0.0)
    audio = chunk_audio(pipe.audio_encoder, signal(1.5), pipe.config, sampling)
    drawn, randn = [], torch.randn

    def recording(*args, generator=None, **kwargs):
        out = randn(*args, generator=generator, **kwargs)
        drawn.append((out.shape[-3], generator))
        return out

    monkeypatch.setattr(torch, "randn", recording)
    talk, reference = Talk.start(
        sampling, pipe.dit, pipe.vae, torch.rand(3, 64, 64) * 2 - 1, 42, audio.num_frames, audio.leads
    )
    for _ in range(2):
        advance(talk, pipe.dit, pipe.vae, audio, reference, decode=True)
    assert [frames for frames, _ in drawn] == [entry["shape"][-3] for entry in reference_draws]
    assert all(generator is talk.generator for _, generator in drawn)
    assert [entry["during"] for entry in reference_draws][:7] == [
        "reference latent",
        "chunk 0 initial noise",
        "chunk 0 step 0",
        "chunk 0 step 1",
        "chunk 0 step 2",
        "chunk 0 step 3",
        "motion latents after chunk 0",
    ]
