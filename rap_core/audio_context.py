"""Audio context modes: which stretch of speech the encoder hears for each chunk's frames.

wav2vec2 normalises and attends over its whole input, so a frame's features depend on the stretch
encoded with it. Three modes, by name (`SamplingConfig.audio_context`; the CLI's --audio-context;
RAP Audio Encode):

- "lookahead" (ours; audio_features.AudioFeatures): chunk-independent features. Frame segments on
  an absolute grid each hear 8 s of past and 8 frames of future audio; any chunking gives the same
  windows, clamped only at the speech's first frame.
- "reference-stream" (SoulX-FlashHead's default streaming, generate_video.py's `stream` mode): each
  chunk encodes the 8 s of audio that end at its last frame (silence before the speech) and keeps
  its own frames; windows are clamped inside that stretch, so a chunk's last frames hear no future.
  Its chunk grid leads with the chunk overlap: chunk 0 starts `overlap` frames before the speech (it
  hears that much silence) and, like every later chunk, emits from its `overlap`-th frame.
- "reference-once" (`once` mode): the whole track, padded with silence as the reference pads it (to a
  chunk's length plus whole steps of chunk - overlap frames), in one encoder call; windows are clamped
  at the padded track's last frame. The grid is lookahead's: chunk 0 emits all its frames.

Whatever the mode, a talk has ceil(seconds x fps) frames: chunks read silence past the speech and the
pipeline trims what lies beyond its end (the reference's once mode drops its last chunk instead).

Each mode has a lazy form that encodes as the chunks ask (the engine's streaming) and an in-memory
form precomputed for a chunk plan (ComfyUI's RAP_AUDIO_EMBEDS); both give `windows(start, end)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar, get_args

import torch

from .audio_features import AudioFeatures, check_mono, encoder_device
from .config import AudioContextName, RAPConfig, SamplingConfig
from .errors import RAPInputError
from .models.audio import SpeechEncoder, frame_windows
from .sampling.continuity import overlap_latents
from .timing import Chunk, covered_video_frames, overlap_frames, plan_chunks, video_frame_count

AUDIO_CONTEXTS: tuple[str, ...] = get_args(AudioContextName)


def _samples(frames: int, config: RAPConfig) -> int:
    """Samples of `frames` video frames (whole frames of sample_rate / fps samples each)."""
    return frames * config.audio.sample_rate // config.fps


def _silence_padded(waveform: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """waveform[start : start + length], zeros where that lies outside the track -> [length]."""
    span = waveform.new_zeros(length)
    low, high = max(start, 0), min(start + length, waveform.numel())
    if low < high:
        span[low - start : high - start] = waveform[low:high]
    return span


class StreamAudio:
    """ "reference-stream", lazily: the windows of chunk [start, end) come from one encoder call on the
    `context_seconds` of audio ending at frame `end`."""

    context = "reference-stream"
    leads = True

    def __init__(
        self, encoder: SpeechEncoder, waveform: torch.Tensor, config: RAPConfig, num_frames: int | None = None
    ):
        check_mono(waveform)
        self.encoder, self.waveform, self.config = encoder, waveform.float(), config
        self.window = config.audio.window
        self.cache_samples = round(config.audio.context_seconds * config.audio.sample_rate)
        self.cache_frames = int(self.cache_samples * config.fps / config.audio.sample_rate)  # the reference's int()
        self.num_frames = num_frames or video_frame_count(waveform.numel(), config.audio.sample_rate, config.fps)

    def _encoded(self, end: int) -> torch.Tensor:
        """Features of the cache ending at frame `end` -> [1, cache_frames, L, C]."""
        span = _silence_padded(self.waveform, _samples(end, self.config) - self.cache_samples, self.cache_samples)
        with torch.no_grad():
            return self.encoder(span[None].to(encoder_device(self.encoder)), self.cache_frames)

    def windows(self, start: int, end: int) -> torch.Tensor:
        """Context windows of frames [start, end), the last frames of the cache ending at `end`
        -> [1, end - start, W, L, C]."""
        if not 0 < end - start <= self.cache_frames:
            raise RAPInputError(
                f"A reference-stream chunk spans frames [{start}, {end}); it must hold 1 to {self.cache_frames} "
                "frames (the audio cache). Shorten the chunks."
            )
        return frame_windows(self._encoded(end), self.window)[:, start - end :]

    def hold(
        self, chunks: list[Chunk], clip: int, temporal_stride: int, progress: Callable[[int, int], None] | None = None
    ) -> StreamWindows:
        """What every chunk of the plan `chunks` (of `clip` frames) reads, computed now and held in memory."""
        blocks, margin = {}, self.window // 2
        for done, chunk in enumerate(chunks, 1):
            end = chunk.start + clip
            blocks[end] = self._encoded(end)[0, -(clip + margin) :].clone()  # [clip + W//2, L, C]
            if progress is not None:
                progress(done, len(chunks))
        return StreamWindows(blocks, clip, self.window, self.num_frames)


@dataclasses.dataclass(frozen=True)
class StreamWindows:
    """ "reference-stream" held in memory: per chunk end, the features of its frames and the W//2
    frames before them (enough for their windows)."""

    context: ClassVar[str] = "reference-stream"
    leads: ClassVar[bool] = True

    blocks: dict[int, torch.Tensor]  # chunk end frame -> [clip + W//2, L, C]
    clip: int
    window: int
    num_frames: int

    def windows(self, start: int, end: int) -> torch.Tensor:
        if end - start != self.clip or end not in self.blocks:
            raise RAPInputError(
                f"These audio embeds were encoded in reference-stream mode for chunks of {self.clip} frames ending "
                f"at frames {sorted(self.blocks)[:3]}...; the sampler asks for frames [{start}, {end}). Keep the "
                "preset's chunk_latents and continuity_n, or choose the lookahead audio context."
            )
        block = self.blocks[end][None]  # [1, clip + W//2, L, C]
        margin = self.window // 2
        return frame_windows(block, self.window)[:, margin:]  # [1, clip, W, L, C]

    def to(self, device) -> StreamWindows:
        return dataclasses.replace(self, blocks={end: block.to(device) for end, block in self.blocks.items()})


@dataclasses.dataclass(frozen=True)
class OnceAudio:
    """ "reference-once": the whole track, padded as the reference pads it for chunks of `clip`
    frames overlapping by `overlap`, encoded in one call; windows clamped at its last frame."""

    context: ClassVar[str] = "reference-once"
    leads: ClassVar[bool] = False

    features: torch.Tensor  # [N, L, C] of the padded track (`OnceAudio.encode`)
    window: int
    clip: int
    overlap: int
    num_frames: int

    @classmethod
    def encode(
        cls,
        encoder: SpeechEncoder,
        waveform: torch.Tensor,
        config: RAPConfig,
        clip: int,
        overlap: int,
        num_frames: int | None = None,
    ) -> OnceAudio:
        """num_frames: the talk's length (default: the audio's); a longer talk hears silence after the speech."""
        check_mono(waveform)
        num_frames = num_frames or video_frame_count(waveform.numel(), config.audio.sample_rate, config.fps)
        clip_samples, step = _samples(clip, config), _samples(clip - overlap, config)
        length = max(waveform.numel(), _samples(num_frames, config))
        padded = length + (-(length - clip_samples)) % step  # one chunk and whole steps, as the reference pads
        track = _silence_padded(waveform.float(), 0, padded)
        frames = int(padded * config.fps / config.audio.sample_rate)
        with torch.no_grad():
            features = encoder(track[None].to(encoder_device(encoder)), frames)[0]  # [N, L, C]
        return cls(features, config.audio.window, clip, overlap, num_frames)

    def windows(self, start: int, end: int) -> torch.Tensor:
        if end - start != self.clip or start % (self.clip - self.overlap) or end > self.features.shape[0]:
            raise RAPInputError(
                f"These audio embeds were encoded in reference-once mode for chunks of {self.clip} frames overlapping "
                f"by {self.overlap}; the sampler asks for frames [{start}, {end}). Keep the preset's chunk_latents and "
                "continuity_n, or choose the lookahead audio context."
            )
        return frame_windows(self.features[None], self.window)[:, start:end]  # [1, end - start, W, L, C]

    def hold(
        self, chunks: list[Chunk], clip: int, temporal_stride: int, progress: Callable[[int, int], None] | None = None
    ) -> OnceAudio:
        """Already in memory: itself."""
        if progress is not None:
            progress(1, 1)
        return self

    def to(self, device) -> OnceAudio:
        return dataclasses.replace(self, features=self.features.to(device))


def chunk_audio(
    encoder: SpeechEncoder,
    waveform: torch.Tensor,
    config: RAPConfig,
    sampling: SamplingConfig,
    num_frames: int | None = None,
):
    """The lazy audio of `sampling.audio_context` for a talk of `num_frames` frames (default: the
    audio's) over mono `waveform` [S], chunked as `sampling` chunks: AudioFeatures, StreamAudio or
    OnceAudio. Each has `windows(start, end)`, `num_frames`, `leads` (whether the chunk grid starts
    with the overlap) and `hold(...)`, its in-memory form for a chunk plan."""
    stride = config.vae.temporal_stride
    clip = covered_video_frames(sampling.chunk_latents, stride)
    overlap = overlap_frames(overlap_latents(sampling), stride)
    modes = {
        "lookahead": lambda: AudioFeatures(encoder, waveform, config, num_frames=num_frames),
        "reference-stream": lambda: StreamAudio(encoder, waveform, config, num_frames),
        "reference-once": lambda: OnceAudio.encode(encoder, waveform, config, clip, overlap, num_frames),
    }
    check_context(sampling.audio_context)
    return modes[sampling.audio_context]()


def held_audio(
    encoder: SpeechEncoder,
    waveform: torch.Tensor,
    config: RAPConfig,
    sampling: SamplingConfig,
    num_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """`chunk_audio`, computed now for `sampling`'s chunk plan and held in memory (ComfyUI's
    RAP_AUDIO_EMBEDS): an EncodedAudio (any chunking), StreamWindows or OnceAudio."""
    audio, stride = chunk_audio(encoder, waveform, config, sampling, num_frames), config.vae.temporal_stride
    chunks = plan_chunks(audio.num_frames, sampling.chunk_latents, overlap_latents(sampling), stride, audio.leads)
    return audio.hold(chunks, covered_video_frames(sampling.chunk_latents, stride), stride, progress)


def check_context(context: str) -> None:
    if context not in AUDIO_CONTEXTS:
        raise RAPInputError(f"Unknown audio context '{context}'; choose one of {', '.join(AUDIO_CONTEXTS)}.")


def leads(context: str) -> bool:
    """Whether `context`'s chunk grid starts with the chunk overlap (timing.plan_chunks)."""
    check_context(context)
    return context == StreamAudio.context
