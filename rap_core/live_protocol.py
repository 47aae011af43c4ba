"""The RAP Live wire protocol (docs/LIVE.md): what a live talk's client and server send each other.

Client -> server: text {"type": "start", ...}, {"type": "end"}, {"type": "clear"}, {"type": "stop"},
and binary PCM16 little-endian mono at the session's sample rate.
Server -> client: text {"type": "ready" | "segment_done" | "error", ...}, and binary
- video: b"RAPV" + uint64 BE frame index + one JPEG image;
- audio: b"RAPA" + uint64 BE index of the first sample + uint32 BE sample rate + PCM16 LE mono, the
  input audio that goes with the frames handed out beside it.

Pure bytes and checks: no server here, so any client or server (and the tests) can share it.
"""

from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .errors import RAPInputError
from .framing import POLICIES

VIDEO_TAG, AUDIO_TAG = b"RAPV", b"RAPA"
_VIDEO_HEADER = struct.Struct(">4sQ")  # tag, frame index
_AUDIO_HEADER = struct.Struct(">4sQI")  # tag, first sample, sample rate
JPEG_QUALITY = 85
MIN_RATE, MAX_RATE = 8000, 96000
_FILE_NAME = re.compile(r"[^/\\:\x00]+")  # a bare name: no folder, drive or NUL


@dataclass(frozen=True)
class Start:
    """A checked `start` message."""

    portrait: str  # a file name in ComfyUI's input folder
    preset: str
    sample_rate: int
    seed: int
    framing: str | None  # "face" or "centre" (framing.POLICIES); None: the preset's
    files: dict[str, str]  # optional loader choices: ckpt_name, vae_name, encoder


FILE_FIELDS = ("ckpt_name", "vae_name", "encoder")  # named as the RAP loaders' widgets


def parse_text(text: str) -> dict:
    """A client's text message -> its JSON object with a known "type"."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError as error:
        raise RAPInputError(f"Text messages are JSON objects; this one is not ({error}).") from None
    if not isinstance(message, dict) or message.get("type") not in ("start", "end", "clear", "stop"):
        raise RAPInputError('A text message is a JSON object whose "type" is start, end, clear or stop.')
    return message


def parse_start(message: dict, presets: list[str]) -> Start:
    """A `start` message, checked: a bare portrait file name, a known preset, a sample rate, a seed, and the
    optional framing and loader files."""
    portrait = message.get("portrait")
    if not isinstance(portrait, str) or not _FILE_NAME.fullmatch(portrait) or portrait in (".", ".."):
        raise RAPInputError(
            f"portrait must be the name of an image in ComfyUI's input folder, without a folder; got {portrait!r}."
        )
    preset = message.get("preset")
    if preset not in presets:
        raise RAPInputError(f"preset must be one of {', '.join(presets)}; got {preset!r}.")
    rate, seed = message.get("sample_rate"), message.get("seed", 0)
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise RAPInputError(f"sample_rate must be a whole number of Hz from {MIN_RATE} to {MAX_RATE}; got {rate!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise RAPInputError(f"seed must be a whole number, 0 or more; got {seed!r}.")
    framing = message.get("framing", "preset")
    if framing not in ("preset", *POLICIES):
        raise RAPInputError(f"framing must be preset, {' or '.join(POLICIES)}; got {framing!r}.")
    files = {name: message[name] for name in FILE_FIELDS if name in message}
    bad = [name for name, value in files.items() if not isinstance(value, str)]
    if bad:
        raise RAPInputError(f"{', '.join(bad)} must name a file as the RAP loaders list it.")
    return Start(portrait, preset, rate, seed, None if framing == "preset" else framing, files)


def pcm16_samples(data: bytes) -> torch.Tensor:
    """A binary message of PCM16 LE mono -> int16 samples [n]."""
    if len(data) % 2:
        raise RAPInputError(f"Audio messages are 16-bit PCM: an even number of bytes; got {len(data)}.")
    return torch.from_numpy(np.frombuffer(data, dtype="<i2").astype(np.int16))


def video_message(index: int, frame: torch.Tensor) -> bytes:
    """frame [H, W, 3] float in 0..1 -> b"RAPV" + index + JPEG."""
    pixels = (frame.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # [H, W, 3]
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=JPEG_QUALITY)
    return _VIDEO_HEADER.pack(VIDEO_TAG, index) + jpeg.getvalue()


def audio_message(index: int, sample_rate: int, samples: torch.Tensor) -> bytes:
    """samples [m] float in -1..1 -> b"RAPA" + first sample index + rate + PCM16 LE."""
    pcm = (samples.clamp(-1, 1) * 32767).round().to(torch.int16).cpu().numpy().astype("<i2")
    return _AUDIO_HEADER.pack(AUDIO_TAG, index, sample_rate) + pcm.tobytes()


def read_video(message: bytes) -> tuple[int, bytes]:
    """b"RAPV" message -> (frame index, JPEG bytes)."""
    tag, index = _VIDEO_HEADER.unpack_from(message)
    if tag != VIDEO_TAG:
        raise ValueError(f"not a video message: {tag!r}")
    return index, message[_VIDEO_HEADER.size :]


def read_audio(message: bytes) -> tuple[int, int, np.ndarray]:
    """b"RAPA" message -> (first sample index, sample rate, int16 samples)."""
    tag, index, rate = _AUDIO_HEADER.unpack_from(message)
    if tag != AUDIO_TAG:
        raise ValueError(f"not an audio message: {tag!r}")
    return index, rate, np.frombuffer(message, dtype="<i2", offset=_AUDIO_HEADER.size)
