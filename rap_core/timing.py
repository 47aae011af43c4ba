"""The frame rule: how many video and latent frames a clip of audio yields.

Everything is exact integer arithmetic on sample counts, so 1.32 s of 16 kHz audio
(21120 samples) gives 33 video frames, never the 34 a float `ceil(1.32 * 25)` would.

- video frames  T = ceil(samples * fps / sample_rate): one frame for every started 1/fps s.
- latent frames F = 1 + ceil((T - 1) / stride): the causal VAE's first latent frame covers one
  video frame, every later one `stride` frames.
- covered frames  = 1 + stride * (F - 1) >= T: what the VAE decodes; the pipeline trims the
  video back to T frames.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .errors import RAPInputError

MAX_CHUNK_LATENTS = 16  # longest chunk (121 video frames) precomputed audio features allow for


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise RAPInputError(f"{name} must be a positive integer, got {value}.")


def video_frame_count(num_samples: int, sample_rate: int, fps: int) -> int:
    """Video frames for `num_samples` of audio: ceil(num_samples * fps / sample_rate)."""
    _check_positive(num_samples=num_samples, sample_rate=sample_rate, fps=fps)
    return -(-num_samples * fps // sample_rate)


def samples_for_frames(num_frames: int, sample_rate: int, fps: int) -> int:
    """The longest audio (in samples) that still gives exactly `num_frames` video frames:
    floor(num_frames * sample_rate / fps). Pad audio to this length to fill `num_frames` frames."""
    _check_positive(num_frames=num_frames, sample_rate=sample_rate, fps=fps)
    return num_frames * sample_rate // fps


def latent_frame_count(video_frames: int, temporal_stride: int) -> int:
    """Latent frames needed for `video_frames` video frames: 1 + ceil((T - 1) / stride)."""
    _check_positive(video_frames=video_frames, temporal_stride=temporal_stride)
    return 1 + -(-(video_frames - 1) // temporal_stride)


def covered_video_frames(latent_frames: int, temporal_stride: int) -> int:
    """Video frames the VAE decodes from `latent_frames` latent frames: 1 + stride * (F - 1)."""
    _check_positive(latent_frames=latent_frames, temporal_stride=temporal_stride)
    return 1 + temporal_stride * (latent_frames - 1)


@dataclass(frozen=True)
class Chunk:
    """One chunk of the streaming loop: a clip of video frames [start, start + clip_frames)."""

    index: int
    start: int  # first video frame of the clip (absolute; negative for a grid that leads with silence)
    emit_from: int  # clip frames before this were already emitted by the previous chunk
    emit_to: int  # clip frames from here on lie past the audio's end and are dropped


def overlap_frames(overlap_latents: int, temporal_stride: int) -> int:
    """Video frames two consecutive chunks share when the next one's first `n` latent frames
    continue the previous one's last `n`: 1 + stride*(n-1) (0 when n = 0). A continued latent
    frame 0 decodes to the last video frame of the 8-frame group it stood for in the old chunk."""
    return 0 if overlap_latents == 0 else 1 + temporal_stride * (overlap_latents - 1)


def plan_chunks(
    total_frames: int, chunk_latents: int, overlap_latents: int, temporal_stride: int, leads: bool = False
) -> list[Chunk]:
    """Chunks that cover `total_frames` video frames exactly once between them.

    Chunk k's clip has 1 + stride*(K-1) frames and starts 1 + stride*(K-1) - overlap frames after
    chunk k-1's; the first chunk emits all its frames, later ones only the new ones, and the last
    one stops at `total_frames`. With `leads` (FlashHead's streaming grid) the first chunk starts
    `overlap` frames before frame 0 and, like the others, emits only from its `overlap`-th frame.
    """
    _check_positive(total_frames=total_frames, chunk_latents=chunk_latents, temporal_stride=temporal_stride)
    if not 0 <= overlap_latents < chunk_latents:
        raise RAPInputError(
            f"The chunk overlap ({overlap_latents} latent frames) must be at least 0 and below the chunk "
            f"length ({chunk_latents} latent frames); lower the continuity n or raise the chunk length."
        )
    clip = covered_video_frames(chunk_latents, temporal_stride)
    overlap = overlap_frames(overlap_latents, temporal_stride)
    chunks, start = [], -overlap if leads else 0
    while True:
        index = len(chunks)
        emit_from = overlap if index or leads else 0
        chunks.append(Chunk(index, start, emit_from, min(clip, total_frames - start)))
        if start + clip >= total_frames:
            return chunks
        start += clip - overlap


class EndlessChunks:
    """plan_chunks' leading grid without a last chunk, for a talk with no known end (live.py): chunk k
    spans frames [k * step - overlap, (k + 1) * step) and adds its last `step`. Made when asked for."""

    def __init__(self, chunk_latents: int, overlap_latents: int, temporal_stride: int):
        self.clip = covered_video_frames(chunk_latents, temporal_stride)
        self.overlap = overlap_frames(overlap_latents, temporal_stride)
        self.step = self.clip - self.overlap

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, k: int) -> Chunk:
        return Chunk(k, k * self.step - self.overlap, self.overlap, self.clip)
