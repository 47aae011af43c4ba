"""Speech for the synthetic world: espeak-ng sentences with varied voices, rates and pitches.

Two disjoint pools, "train" and "heldout": neither a voice (base language voice or variant) nor a
content word of one pool appears in the other, so held-out clips sound and read unlike anything
seen in training. A voice is "<base>" or "<base>+<variant>" in espeak-ng's naming.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from ..errors import RAPInputError

SAMPLE_RATE = 16000
SPLITS = ("train", "heldout")
RATE_RANGE = (120, 200)  # espeak-ng words per minute
PITCH_RANGE = (30, 70)  # espeak-ng pitch, 0..99

_BASES = {"train": ("en-us", "en", "en-gb-scotland", "de"), "heldout": ("en-gb-x-rp", "en-029", "en-us-nyc", "es")}
_VARIANTS = {"train": ("", "m1", "m3", "f2", "f4", "klatt"), "heldout": ("", "m5", "m7", "f1", "f3", "klatt3")}
_WORDS = {
    "train": {
        "who": ("Anna", "the farmer", "my brother", "the pilot", "Oscar", "a teacher"),
        "did": ("painted", "carried", "found", "washed", "sold", "opened"),
        "what": ("the yellow boat", "seven apples", "a wooden chair", "the old piano", "two blue kites", "a heavy box"),
        "where": (
            "near the river",
            "before lunch",
            "in the garden",
            "at the market",
            "under the bridge",
            "every morning",
        ),
    },
    "heldout": {
        "who": ("Victor", "the baker", "her cousin", "the doctor", "Maria", "a stranger"),
        "did": ("cleaned", "dropped", "bought", "mended", "brought", "watched"),
        "what": ("a silver spoon", "nine lemons", "the broken clock", "a purple scarf", "three glass jars", "the map"),
        "where": (
            "beside the lake",
            "after dinner",
            "on the train",
            "in the kitchen",
            "through the window",
            "last winter",
        ),
    },
}


@dataclass(frozen=True)
class Utterance:
    """One sentence and how espeak-ng says it."""

    text: str
    voice: str  # espeak-ng voice: "<base>" or "<base>+<variant>"
    rate: int  # words per minute
    pitch: int  # 0..99


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise RAPInputError(f"The split must be one of {SPLITS}, got {split!r}.")


def voices(split: str) -> tuple[str, ...]:
    """Every voice of `split`: each base voice alone and with each variant."""
    _check_split(split)
    return tuple(f"{base}+{variant}" if variant else base for base in _BASES[split] for variant in _VARIANTS[split])


def texts(split: str) -> tuple[str, ...]:
    """Every sentence of `split` (1296 each): who did what, where."""
    _check_split(split)
    words = _WORDS[split]
    return tuple(
        f"{who[0].upper()}{who[1:]} {did} {what} {where}."
        for who in words["who"]
        for did in words["did"]
        for what in words["what"]
        for where in words["where"]
    )


def sample_utterance(seed: int, split: str = "train") -> Utterance:
    """The utterance of `seed` in `split`: the same on every machine."""
    _check_split(split)
    rng = random.Random(f"utterance:{split}:{seed}")
    return Utterance(
        text=rng.choice(texts(split)),
        voice=rng.choice(voices(split)),
        rate=rng.randint(*RATE_RANGE),
        pitch=rng.randint(*PITCH_RANGE),
    )


def _parse_wav(data: bytes) -> tuple[torch.Tensor, int]:
    """espeak-ng's streamed 16-bit mono WAV (its size fields are placeholders) -> ([S] float32, rate)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RAPInputError(
            "espeak-ng did not write a WAV file; check that `espeak-ng --stdout` works on this machine."
        )
    offset, rate, pcm = 12, None, None
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if kind == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[offset + 8 : offset + 24])
            if (fmt, channels, bits) != (1, 1, 16):
                raise RAPInputError(
                    f"espeak-ng wrote PCM format {fmt}, {channels} channels, {bits} bits; expected 1, 1, 16."
                )
        elif kind == b"data":
            pcm = data[offset + 8 :]
            break
        offset += 8 + size
    if rate is None or pcm is None:
        raise RAPInputError("espeak-ng's WAV output has no format or data chunk; check the espeak-ng installation.")
    samples = torch.frombuffer(bytearray(pcm[: len(pcm) // 2 * 2]), dtype=torch.int16)
    return samples.to(torch.float32) / 32768.0, rate


def synthesize(text: str, voice: str, rate: int, pitch: int) -> torch.Tensor:
    """`text` spoken by espeak-ng -> [S] float32 mono at 16 kHz."""
    if not text.strip():
        raise RAPInputError("There is no text to speak: give a non-empty sentence.")
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise RAPInputError(
            "The synthetic world speaks with espeak-ng, which is not installed. Install Debian's espeak-ng "
            "package (`apt-get install espeak-ng`); `make test` installs it."
        )
    command = [executable, "--stdout", "--stdin", "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch))]
    result = subprocess.run(command, input=text.encode(), capture_output=True, timeout=60, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RAPInputError(
            f"espeak-ng could not speak with voice {voice!r} (rate {rate}, pitch {pitch}): "
            f"{result.stderr.decode(errors='replace').strip() or 'no output'}. "
            "List the voices with `espeak-ng --voices`."
        )
    waveform, source_rate = _parse_wav(result.stdout)
    if waveform.numel() == 0:
        raise RAPInputError(f"espeak-ng returned no audio for {text!r} with voice {voice!r}.")
    return AF.resample(waveform, source_rate, SAMPLE_RATE)
