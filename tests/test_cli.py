"""The CLI end to end on the tiny preset: an mp4 with exactly ceil(seconds * 25) frames and the audio."""

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rap_core.media.container import probe_mp4

RATE = 22050  # deliberately not 16 kHz: the CLI resamples
PORTRAIT = Path(__file__).resolve().parents[1] / "assets" / "rap_portrait.png"


def rap_core_cli(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """`python -m rap_core ARGS` in a fresh process -> its exit code and text output."""
    return subprocess.run([sys.executable, "-m", "rap_core", *args], capture_output=True, text=True, timeout=timeout)


def write_wav(path, seconds: float) -> int:
    samples = int(round(seconds * RATE))
    t = np.arange(samples) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    stereo = np.stack([tone, 0.5 * tone], axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((stereo * 32767).astype("<i2").tobytes())
    return samples


@pytest.fixture(scope="module")
def portrait_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "portrait.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 90, 4), dtype=np.uint8), "RGBA").save(path)
    return path


@pytest.mark.parametrize("seconds", [0.5, 1.32, 7.0, 61.0])
def test_cli_writes_mp4_with_exact_frames_and_audio(tmp_path, portrait_png, seconds):
    audio = tmp_path / "speech.wav"
    samples = write_wav(audio, seconds)
    out = tmp_path / "talk.mp4"
    result = rap_core_cli(
        "generate",
        "--preset",
        "tiny",
        "--image",
        str(portrait_png),
        "--audio",
        str(audio),
        "--out",
        str(out),
        "--seed",
        "3",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    info = probe_mp4(out)
    assert info["frames"] == -(-samples * 25 // RATE)  # ceil(seconds * 25), exactly
    assert (info["width"], info["height"]) == (64, 64)
    assert abs(info["audio_seconds"] - samples / RATE) <= 1 / 25
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_cli_reports_bad_input_without_traceback(tmp_path, portrait_png):
    audio = tmp_path / "empty.wav"
    write_wav(audio, 0.0)
    result = rap_core_cli(
        "generate",
        "--preset",
        "tiny",
        "--image",
        str(portrait_png),
        "--audio",
        str(audio),
        "--out",
        str(tmp_path / "x.mp4"),
        timeout=120,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_cli_refuses_motion_intensity_the_model_lacks_or_out_of_range(tmp_path, portrait_png):
    audio = tmp_path / "speech.wav"
    write_wav(audio, 0.5)
    base = (
        "generate",
        "--preset",
        "tiny",
        "--image",
        str(portrait_png),
        "--audio",
        str(audio),
        "--out",
        str(tmp_path / "t.mp4"),
    )
    refused = rap_core_cli(*base, "--head-motion", "0.9", timeout=120)
    assert refused.returncode == 2 and "no motion-intensity controls" in refused.stderr
    outside = rap_core_cli(*base, "--expression", "1.5", timeout=120)
    assert outside.returncode == 2 and "expression must be in [0, 1]" in outside.stderr
    assert not (tmp_path / "t.mp4").exists()


def test_cli_names_the_flags_and_downloads_a_preset_without_weights_needs(tmp_path, portrait_png):
    audio = tmp_path / "speech.wav"
    write_wav(audio, 0.5)
    result = rap_core_cli(
        "generate",
        "--image",
        str(portrait_png),
        "--audio",
        str(audio),
        "--out",
        str(tmp_path / "t.mp4"),
        "--vae",
        str(tmp_path / "vae.safetensors"),
        timeout=120,
    )  # the default preset
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "give --dit, --audio-encoder" in result.stderr and "Soul-AILab/SoulX-FlashHead-1_3B" in result.stderr
    assert "--preset demo" in result.stderr


def test_cli_says_a_missing_file_is_missing(tmp_path, portrait_png):
    result = rap_core_cli(
        "generate",
        "--preset",
        "tiny",
        "--image",
        str(portrait_png),
        "--audio",
        str(tmp_path / "nowhere.wav"),
        "--out",
        str(tmp_path / "t.mp4"),
        timeout=120,
    )
    assert result.returncode == 2 and "nowhere.wav' does not exist; check the path" in result.stderr


def test_every_demo_run_says_what_the_demo_model_can_animate(tmp_path):
    result = rap_core_cli(
        "generate",
        "--preset",
        "demo",
        "--image",
        str(PORTRAIT),
        "--audio",
        str(tmp_path / "nowhere.wav"),
        "--out",
        str(tmp_path / "t.mp4"),
        timeout=300,
    )
    assert "synthetic cartoon world" in result.stderr and "not photographs of people" in result.stderr
    assert result.stderr.count("synthetic cartoon world") == 1


def test_cli_pastes_the_animated_face_back_into_the_photo(tmp_path):
    """--paste-back: the video has the photo's size (an odd side cut to even for H.264)."""
    photo = Image.new("RGB", (701, 523), (128, 128, 128))
    photo.paste(Image.open(PORTRAIT).convert("RGB").resize((300, 300)), (330, 180))
    photo.save(tmp_path / "photo.png")
    audio = tmp_path / "speech.wav"
    samples = write_wav(audio, 0.5)
    out = tmp_path / "talk.mp4"
    result = rap_core_cli(
        "generate",
        "--preset",
        "demo",
        "--image",
        str(tmp_path / "photo.png"),
        "--audio",
        str(audio),
        "--out",
        str(out),
        "--framing",
        "face",
        "--paste-back",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    info = probe_mp4(out)
    assert (info["width"], info["height"], info["frames"]) == (700, 522, -(-samples * 25 // RATE))


def test_cli_rejects_a_framing_it_cannot_read(tmp_path, portrait_png):
    result = rap_core_cli(
        "generate",
        "--preset",
        "tiny",
        "--image",
        str(portrait_png),
        "--audio",
        str(tmp_path / "a.wav"),
        "--out",
        str(tmp_path / "t.mp4"),
        "--framing",
        "10,20,30",
        timeout=300,
    )
    assert result.returncode == 2 and "expected face, centre or TOP,BOTTOM,LEFT,RIGHT" in result.stderr
