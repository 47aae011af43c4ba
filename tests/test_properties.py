"""Property tests of the input contract (DESIGN.md §6) through the public API, `tiny` preset:
whatever audio and portrait come in, the video has exactly ceil(seconds * 25) frames, finite and
in [0, 1], or the call raises RAPInputError with a message; never another exception or a wrong
length. Hypothesis runs derandomized and without its database, so CI sees the same cases every run.
"""

import math
import warnings
from dataclasses import dataclass

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rap_core import RAPInputError, RAPPipeline
from rap_core.audio_features import AudioFeatures
from rap_core.media.normalise import audio_to_mono
from rap_core.timing import samples_for_frames, video_frame_count

FPS = 25
COMMON_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
REFUSED = ("empty", "nan", "inf", "overflow")  # audio every call must refuse
CASES = settings(deadline=None, derandomize=True, database=None)


@pytest.fixture(scope="module")
def pipe():
    return RAPPipeline.from_preset("tiny")


@dataclass(frozen=True)
class Audio:
    """A clip described by numbers; `tensor()` builds it (channels 0: a flat [S] tensor)."""

    samples: int
    rate: int
    channels: int
    dtype: torch.dtype
    content: str  # "silence", "speech", "clipped" at `level`, "nan", "inf", "overflow"
    level: float = 1.0

    @property
    def case(self) -> str:
        return "empty" if self.samples == 0 else self.content

    def tensor(self) -> torch.Tensor:
        t = torch.arange(self.samples) / self.rate
        tone = torch.sin(2 * math.pi * 220 * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t))  # [S]
        if self.case in ("empty", "silence"):
            wave = torch.zeros(self.samples)
        elif self.content in ("nan", "inf"):
            bad = math.nan if self.content == "nan" else -math.inf
            wave = tone.index_fill(0, torch.tensor([self.samples // 2]), bad)
        else:
            wave = {"speech": 0.5, "clipped": 4 * self.level, "overflow": 1e20}[self.content] * tone
            wave = wave.clamp(-self.level, self.level) if self.content == "clipped" else wave
        if self.dtype == torch.int16:
            wave = (wave * 32768).round().clamp(-32768, 32767).to(torch.int16)
        return wave if self.channels == 0 else wave.expand(self.channels, -1)  # [C, S], no copy

    def frames(self) -> int:
        return video_frame_count(self.samples, self.rate, FPS)


@st.composite
def audios(draw, max_seconds: int) -> Audio:
    """Any length up to `max_seconds` (0 and both sides of frame boundaries included), 1-8 channels
    or a flat tensor, common or odd integer rates of 8-96 kHz, float32 or int16, and content that
    is silent, speech-like, clipped at or past full scale, non-finite or beyond any PCM level."""
    rate = draw(st.one_of(st.sampled_from(COMMON_RATES), st.integers(8000, 96000)))
    boundary = st.tuples(st.integers(1, max_seconds * FPS), st.integers(-1, 1))
    samples = draw(
        st.one_of(
            st.integers(0, max_seconds * rate),
            boundary.map(lambda frame_step: samples_for_frames(frame_step[0], rate, FPS) + frame_step[1]),
        )
    )
    dtype = draw(st.sampled_from((torch.float32, torch.int16)))
    contents = ("silence", "speech", "clipped") + (() if dtype == torch.int16 else ("nan", "inf", "overflow"))
    content = draw(st.sampled_from(contents))
    clipped_float = content == "clipped" and dtype == torch.float32
    level = draw(st.sampled_from((1.0, 1.5, 32768.0, 2.0**31))) if clipped_float else 1.0  # 2^31: the PCM limit
    return Audio(samples, rate, draw(st.integers(0, 8)), dtype, content, level)


def assert_refusal_fits(audio: Audio, error: RAPInputError) -> None:
    """Refusing is right for empty, non-finite or overflowing audio, and allowed for an odd rate if
    the message names it; valid audio at a common rate must never be refused."""
    assert str(error).strip()
    assert audio.case in REFUSED or (audio.rate not in COMMON_RATES and f"{audio.rate} Hz" in str(error)), str(error)


def assert_video(frames: torch.Tensor, count: int, pipe: RAPPipeline) -> None:
    assert frames.shape == (count, pipe.config.height, pipe.config.width, 3)
    assert frames.dtype == torch.float32
    assert torch.isfinite(frames).all()
    assert frames.min() >= 0 and frames.max() <= 1


def portrait() -> torch.Tensor:
    """A 64x64 RGB picture: red ramps down the rows, green across the columns."""
    ramp = torch.linspace(0.1, 0.9, 64)  # [64]
    channels = [ramp[:, None].expand(64, 64), ramp[None].expand(64, 64), torch.full((64, 64), 0.5)]
    return torch.stack(channels, dim=-1)  # [64, 64, 3]


@settings(CASES, max_examples=80)
@given(audio=audios(max_seconds=120))
@example(audio=Audio(1334313, 65536, 0, torch.float32, "speech"))  # 1 sample past frame 509 at 20.36 s
@example(audio=Audio(120 * 96000, 96000, 8, torch.int16, "clipped"))
def test_any_audio_plans_the_exact_frame_count_or_is_refused(pipe, audio):
    """The frames the pipeline plans for any audio up to 120 s (from the mono 16 kHz track it
    encodes, as `stream` does) are exactly ceil(samples * 25 / rate), and its chunks emit exactly
    that many; otherwise the audio is refused with a reason."""
    try:
        mono = audio_to_mono(audio.tensor(), audio.rate, pipe.config.audio.sample_rate)
        planned = AudioFeatures(pipe.audio_encoder, mono, pipe.config).num_frames
    except RAPInputError as error:
        assert_refusal_fits(audio, error)
        return
    assert audio.case not in REFUSED
    assert planned == audio.frames()
    assert sum(chunk.emit_to - chunk.emit_from for chunk in pipe.chunk_plan(planned)) == planned


@settings(CASES, max_examples=25)
@given(audio=audios(max_seconds=2))
@example(audio=Audio(120 * 44100, 44100, 2, torch.int16, "speech"))  # the longest clip, whole
@example(audio=Audio(1334313, 65536, 1, torch.float32, "speech"))
def test_generate_gives_the_exact_frames_for_any_audio_or_refuses(pipe, audio):
    """generate() on any short audio (and two long clips) returns exactly ceil(samples * 25 / rate)
    finite frames in [0, 1], or refuses the audio with a reason."""
    try:
        frames = pipe.generate(portrait(), audio.tensor(), audio.rate, seed=0)
    except RAPInputError as error:
        assert_refusal_fits(audio, error)
        return
    assert audio.case not in REFUSED
    assert_video(frames, audio.frames(), pipe)


@dataclass(frozen=True)
class Image:
    """A portrait described by numbers; `tensor()` builds a vertical ramp from `low` to `high`
    in every channel (alpha included) without allocating more than one column."""

    height: int
    width: int
    channels: int
    batch: int  # 0: a single [H, W, C] image
    dtype: torch.dtype
    low: float
    high: float

    def tensor(self) -> torch.Tensor:
        ramp = torch.linspace(self.low, self.high, self.height)  # [H]
        ramp = (ramp * 255).round().to(torch.uint8) if self.dtype == torch.uint8 else ramp.to(self.dtype)
        image = ramp[:, None, None].expand(self.height, self.width, self.channels)  # [H, W, C], no copy
        return image if self.batch == 0 else image.expand(self.batch, -1, -1, -1)  # [B, H, W, C]


sides = st.one_of(st.integers(1, 96), st.integers(1, 4096), st.just(4096))
images = st.builds(
    Image,
    sides,
    sides,
    st.sampled_from((1, 3, 4)),
    st.integers(0, 4),
    st.sampled_from((torch.float32, torch.float16, torch.uint8)),
    st.floats(0, 1),
    st.floats(0, 1),
)


@settings(CASES, max_examples=20)
@given(image=images, samples=st.integers(3200, 16000))
@example(image=Image(4096, 4096, 4, 4, torch.uint8, 0.0, 1.0), samples=3200)
@example(image=Image(7, 4096, 3, 0, torch.float32, 0.0, 1.0), samples=3200)
def test_any_portrait_gives_the_exact_frames_or_is_refused(pipe, image, samples):
    """Any portrait of 1-4096 px sides, 1/3/4 channels, batched or not, float 0..1 or uint8, with
    0.2-1 s of speech gives exactly ceil(seconds * 25) finite frames in [0, 1] (a batch warns that
    only its first image is used); one under 8 px on a side is refused with a reason."""
    audio = Audio(samples, 16000, 1, torch.float32, "speech")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frames = pipe.generate(image.tensor(), audio.tensor(), audio.rate, seed=0)
        except RAPInputError as error:
            assert str(error).strip()
            assert min(image.height, image.width) < 8, str(error)
            return
    assert min(image.height, image.width) >= 8
    assert_video(frames, audio.frames(), pipe)
    batch_warned = any("only the first" in str(warning.message) for warning in caught)
    assert batch_warned == (image.batch > 1)
