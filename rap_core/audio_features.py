"""Per-video-frame wav2vec2 features that do not depend on how the video is chunked.

wav2vec2 normalises and attends over its whole input, so a frame's features change with the
stretch of audio that is encoded. Here that stretch is fixed by the frame alone: video frames are
grouped into segments of G frames on an absolute grid, and segment j = frames [jG, (j+1)G) takes
its features from one encoder call on the audio of frames [jG - context, (j+1)G + lookahead)
(silence before the clip's start and after its end), keeping the G frames of the segment.
A frame's features are thus a pure function of the audio: the same for `generate()` and
`stream()`, any chunk length and any overlap; and each segment reads a bounded stretch of audio,
so memory stays bounded however long the audio is.

Frame f starts at sample floor(f * sample_rate / fps) (640 samples per frame at 16 kHz, 25 fps).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import ClassVar

import torch

from .checks import check_frame_range, check_window
from .config import RAPConfig
from .errors import RAPInputError
from .models.audio import SpeechEncoder, frame_windows
from .timing import MAX_CHUNK_LATENTS, covered_video_frames, video_frame_count


def encoder_device(encoder: torch.nn.Module) -> torch.device:
    """Where the audio encoder's tensors are."""
    return next(itertools.chain(encoder.parameters(), encoder.buffers())).device


def check_mono(waveform: torch.Tensor) -> None:
    if waveform.ndim != 1 or waveform.numel() == 0:
        raise RAPInputError(
            f"Audio features take one non-empty mono track shaped [samples]; got shape "
            f"{tuple(waveform.shape)}. Convert the audio with rap_core.media.normalise.audio_to_mono first."
        )


class AudioFeatures:
    """The wav2vec2 features of one mono track, computed lazily a segment at a time: the "lookahead"
    audio context (audio_context.py).

    Callers walk forward through the audio (the pipeline's chunks): every request drops the cached
    segments before its first frame and keeps at most `cache_segments` segments after it.
    `batch_segments` segments share one encoder call (each is normalised on its own, so batching
    does not change them); it bounds peak memory (about 60 MB of CNN activations per segment for
    wav2vec2-base in float32).
    """

    context, leads = "lookahead", False
    batch_segments, cache_segments = 8, 4

    def __init__(
        self, encoder: SpeechEncoder, waveform: torch.Tensor, config: RAPConfig, num_frames: int | None = None
    ):
        """waveform [S] mono at `config`'s sample rate (`rap_core.media.normalise.audio_to_mono`). num_frames:
        the talk's length (default: the audio's); frames past the speech are those of silence."""
        audio, fps = config.audio, config.fps
        if fps < 1:
            raise RAPInputError(f"AudioFeatures needs a positive video frame rate, got fps={fps}. Fix the preset.")
        check_mono(waveform)
        if audio.segment_frames < 1 or audio.lookahead_frames < 0 or audio.context_seconds < 0:
            raise RAPInputError(
                f"Audio segments need segment_frames >= 1, lookahead_frames >= 0 and context_seconds >= 0; "
                f"got {audio.segment_frames}, {audio.lookahead_frames} and {audio.context_seconds}. "
                "Fix the AudioConfig."
            )
        self.encoder, self.waveform, self.fps = encoder, waveform.float(), fps
        self.sample_rate, self.window = audio.sample_rate, audio.window
        self.segment, self.context = audio.segment_frames, round(audio.context_seconds * fps)
        self.span_frames = self.context + self.segment + audio.lookahead_frames
        self.span_samples = -(-self.span_frames * self.sample_rate // fps)
        if self.span_samples < encoder.min_samples:
            raise RAPInputError(
                f"An audio segment with its context spans {self.span_samples} samples, fewer than the "
                f"{encoder.min_samples} wav2vec2 needs; raise segment_frames or context_seconds."
            )
        self.num_frames = num_frames or video_frame_count(waveform.numel(), self.sample_rate, fps)
        self._cache: dict[int, torch.Tensor] = {}  # segment index -> features [G, L, C]

    def _span(self, segment: int) -> torch.Tensor:
        """The audio segment `segment` is encoded from: [span_samples], zeros outside the clip."""
        start = (segment * self.segment - self.context) * self.sample_rate // self.fps
        span = self.waveform.new_zeros(self.span_samples)
        low, high = max(start, 0), min(start + self.span_samples, self.waveform.numel())
        if low < high:
            span[low - start : high - start] = self.waveform[low:high]
        return span

    def _encode(self, segments: list[int]) -> list[torch.Tensor]:
        """Segment indices -> their features, each [G, L, C], `batch_segments` per encoder call."""
        device = encoder_device(self.encoder)
        features = []
        for first in range(0, len(segments), self.batch_segments):
            batch = segments[first : first + self.batch_segments]
            spans = torch.stack([self._span(j) for j in batch]).to(device)  # [B, span_samples]
            with torch.no_grad():
                encoded = self.encoder(spans, self.span_frames)  # [B, span_frames, L, C]
            kept = encoded[:, self.context : self.context + self.segment]  # [B, G, L, C]
            features.extend(item.clone() for item in kept)
        return features

    def frames(self, start: int, end: int) -> torch.Tensor:
        """Features of video frames [start, end) -> [1, end - start, L, C]. Frames at or past
        `num_frames` are those of the audio followed by silence."""
        check_frame_range("Audio", start, end)
        first, last = start // self.segment, (end - 1) // self.segment
        self._cache = {j: cached for j, cached in self._cache.items() if j >= first}
        missing = [j for j in range(first, last + 1) if j not in self._cache]
        self._cache.update(zip(missing, self._encode(missing)))
        segments = torch.cat([self._cache[j] for j in range(first, last + 1)])  # [(last-first+1)*G, L, C]
        self._cache = {j: cached for j, cached in self._cache.items() if j > last - self.cache_segments}
        offset = first * self.segment
        return segments[None, start - offset : end - offset]  # [1, end - start, L, C]

    def windows(self, start: int, end: int) -> torch.Tensor:
        """Context windows of video frames [start, end) -> [1, end - start, W, L, C] (`context_windows`)."""
        return context_windows(self.frames, start, end, self.window)

    def encode_all(self, end: int | None = None, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Features of video frames [0, end) (default `num_frames`) in batched encoder calls,
        bypassing the cache -> [1, end, L, C]; equal to `frames(0, end)`. `progress(done, total)`
        is called with segment counts after every encoder call."""
        end = self.num_frames if end is None else end
        if end < 1:
            raise RAPInputError(f"encode_all needs at least one frame, got end={end}.")
        total, segments = -(-end // self.segment), []
        for first in range(0, total, self.batch_segments):
            segments += self._encode(list(range(first, min(first + self.batch_segments, total))))
            if progress is not None:
                progress(len(segments), total)
        return torch.cat(segments)[None, :end]  # [1, end, L, C]

    def encode(
        self,
        temporal_stride: int,
        num_frames: int | None = None,
        max_chunk_latents: int = MAX_CHUNK_LATENTS,
        progress: Callable[[int, int], None] | None = None,
    ) -> EncodedAudio:
        """All the features a talk of `num_frames` video frames (default: the audio's) can ask for with
        chunks of up to `max_chunk_latents` latent frames (of `temporal_stride` video frames each),
        computed now -> EncodedAudio. Frames past
        the audio's end are those of silence, so a longer talk holds still at the end."""
        num_frames = self.num_frames if num_frames is None else num_frames
        if num_frames < 1:
            raise RAPInputError(f"A talk needs at least one video frame, got {num_frames}.")
        clip = covered_video_frames(max_chunk_latents, temporal_stride)
        end = num_frames - 1 + clip + self.window // 2  # the last chunk starts at a frame < num_frames
        return EncodedAudio(self.encode_all(end, progress)[0], num_frames, self.window, max_chunk_latents)

    def hold(self, chunks, clip: int, temporal_stride: int, progress: Callable[[int, int], None] | None = None):
        """Held in memory for any chunking (audio_context's protocol): `encode`."""
        return self.encode(temporal_stride, self.num_frames, progress=progress)


@dataclasses.dataclass(frozen=True)
class EncodedAudio:
    """A talk's audio features held in memory (ComfyUI's RAP_AUDIO_EMBEDS): the frames of
    `AudioFeatures` for every chunk a talk of `num_frames` frames can ask for."""

    context: ClassVar[str] = "lookahead"
    leads: ClassVar[bool] = False

    features: torch.Tensor  # [N, L, C] of video frames [0, N)
    num_frames: int
    window: int
    max_chunk_latents: int

    def to(self, device) -> EncodedAudio:
        return dataclasses.replace(self, features=self.features.to(device))

    def frames(self, start: int, end: int) -> torch.Tensor:
        """Features of video frames [start, end) -> [1, end - start, L, C]."""
        check_frame_range("Audio", start, end)
        if end > self.features.shape[0]:
            raise RAPInputError(
                f"Audio features end at frame {self.features.shape[0]} but frame {end - 1} was asked for: chunks "
                f"are limited to {self.max_chunk_latents} latent frames; lower the chunk length."
            )
        return self.features[None, start:end]  # [1, end - start, L, C]

    def windows(self, start: int, end: int) -> torch.Tensor:
        """Context windows of video frames [start, end) -> [1, end - start, W, L, C] (`context_windows`)."""
        return context_windows(self.frames, start, end, self.window)


def context_windows(frames: Callable[[int, int], torch.Tensor], start: int, end: int, window: int) -> torch.Tensor:
    """Windows of frames i - W//2 .. i + W//2 around every video frame i in [start, end), read through
    `frames(a, b) -> [1, b - a, L, C]` -> [1, end - start, W, L, C]. Clamped only at the audio's first
    frame: past the end the windows read the features of silence, so every frame's window is the
    same whatever chunk asks for it."""
    check_window(window)
    low = max(start - window // 2, 0)
    features = frames(low, end + window // 2)  # [1, end + W//2 - low, L, C]
    return frame_windows(features, window)[:, start - low : end - low]  # [1, end - start, W, L, C]
