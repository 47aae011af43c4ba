"""A live talk: the portrait animated as speech arrives, a chunk as soon as its audio is in.

`LiveTalk` takes mono PCM pushed in pieces of any size at the session's sample rate, the end of each
utterance, interrupts and a stop, and `poll()` hands out, in order, the video frames, the input audio
they go with and the ends of utterances, each stamped with its presentation time (pts).

Hearing. A live talk uses the "reference-stream" audio context (audio_context.py, FlashHead's
streaming): chunk k hears the 8 s of audio that end at its last frame, never any after it, so it can
be rendered the moment its audio is complete, and an utterance gives exactly the frames of
`RAPPipeline.stream(..., audio_context="reference-stream")` on the same audio and seed. No lookahead
is needed. The chunk grid is that context's leading grid: chunk k spans frames [kL - O, (k+1)L) and
adds frames [kL, (k+1)L) (clip C = 1 + stride (K - 1) frames for K = `chunk_latents`, overlap O, step
L = C - O), so a frame waits at most L frames of audio plus one chunk's compute.

Resampling. Pushed audio is resampled to the model's rate as it arrives, with the filter of
media.normalise.audio_to_mono (torchaudio's windowed sinc, the same weights at the same positions), holding
back only the samples whose filter window reaches past the newest one (under 1 ms at 48 kHz; at
44.1 kHz, whose outputs come 160 per 441 inputs, up to 20 ms). The samples agree with
resampling the whole utterance at once up to float32 rounding: conv1d sums short and long inputs in
different orders, so a sample may differ by a few ulp (measured at most 2.4e-7 on audio in -1..1).
At the model's own rate (16 kHz) nothing is resampled and the frames equal `stream()`'s exactly.

Utterances and silence. A session is one continuous talk along a timeline: each utterance starts at
the next chunk boundary, `end()` completes its last chunk with silence (the utterance of s seconds
owns its first ceil(s * fps) frames, which is when `SegmentDone` comes; the chunk's other frames are
already the silence after it), and `clear()` drops whatever is not yet rendered. Between utterances,
when `poll(now=...)` is given the clock, chunks of silence are rendered just in time, so the stream
never stops and the face stays alive: the model animates silence as it animates the pauses inside
speech, a still face with a closed mouth. This costs the compute of rendering while idle and up to
one chunk (L / fps) of extra latency for the next utterance, which waits for the chunk of silence
already rendered; in return the face never freezes mid-expression, the talk's continuity carries
from one utterance through the silence into the next (no jump back to the reference pose), pts keep
pace with the clock, and the whole session's frames are those of `stream()` over its timeline (the
audio `poll()` hands out, silence included). Without `now`, nothing is rendered between utterances.

Memory stays flat however long the session: the model-rate audio is trimmed to the 8 s the next chunk
hears, input-rate audio is dropped once handed out, the resampler keeps its filter's reach, and the
talk follows an endless chunk plan computed per chunk, so nothing accumulates per chunk. What grows is
only the queue of audio pushed faster than it is rendered (`queued_seconds`).

`push`, `end`, `clear` and `stop` may be called from another thread than `poll` (a server's receiving
loop and its rendering worker); `poll` renders outside the lock, so pushes never wait for a chunk.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio

from .audio_context import StreamAudio
from .errors import RAPInputError
from .media.normalise import audio_to_mono
from .pipeline import RAPPipeline
from .talk import Talk, advance, chunk_frames
from .timing import Chunk, covered_video_frames

LIVE_CONTEXT = "reference-stream"


@dataclass(frozen=True)
class LiveVideo:
    """Frames [index, index + n) of the session: frames [n, H, W, 3] float32 in 0..1."""

    index: int
    frames: torch.Tensor
    fps: int

    @property
    def pts(self) -> float:
        """When the first frame is shown, in seconds from the session's frame 0."""
        return self.index / self.fps


@dataclass(frozen=True)
class LiveAudio:
    """The sound of the LiveVideo handed out with it: input-rate mono samples [m] float32, the
    session's samples [index, index + m), silence where the timeline had none."""

    index: int
    samples: torch.Tensor
    sample_rate: int

    @property
    def pts(self) -> float:
        return self.index / self.sample_rate


@dataclass(frozen=True)
class SegmentDone:
    """An ended utterance's frames [first, first + frames) have all been handed out."""

    first: int
    frames: int


LiveItem = LiveVideo | LiveAudio | SegmentDone


class _Track:
    """Samples [start, end) of a mono timeline, held as the pieces they arrived in."""

    def __init__(self):
        self.start, self.end, self._pieces = 0, 0, []

    def append(self, samples: torch.Tensor) -> None:
        self._pieces.append(samples)
        self.end += samples.numel()

    def pad_to(self, end: int) -> None:
        """Silence up to sample `end`."""
        if end > self.end:
            self.append(torch.zeros(end - self.end))

    def _joined(self) -> torch.Tensor:
        joined = torch.cat(self._pieces) if self._pieces else torch.zeros(0)
        self._pieces = [joined]
        return joined

    def read(self, low: int, high: int) -> torch.Tensor:
        """Samples [low, high), which must be held -> [high - low], a copy."""
        return self._joined()[low - self.start : high - self.start].clone()

    def keep(self, low: int, high: int) -> None:
        """Hold only samples [low, high) (clipped to what is held)."""
        low, high = max(low, self.start), min(high, self.end)
        self._pieces = [self._joined()[low - self.start : high - self.start].clone()]
        self.start, self.end = low, max(low, high)


class _Resampler:
    """One utterance from the input rate to the model's, piece by piece, with media.normalise.audio_to_mono's
    filter (torchaudio's windowed sinc, float32). Output sample j is conv position p = j // new (of
    `new` outputs per `orig` inputs) and reads input samples [p * orig - width, (p + 1) * orig + width),
    zeros before the utterance; it is given out once they have all arrived, or at `flush`."""

    def __init__(self, rate: int, target: int):
        common = math.gcd(rate, target)
        self.orig, self.new = rate // common, target // common
        self.filter = torchaudio.transforms.Resample(rate, target, dtype=torch.float32)
        self.reach = -(-self.filter.width // self.orig)  # conv positions the filter reaches back
        self.held, self.first, self.made = torch.zeros(0), 0, 0  # input from sample `first`; outputs given

    @property
    def taken(self) -> int:
        """Input samples of the utterance so far."""
        return self.first + self.held.numel()

    def feed(self, samples: torch.Tensor) -> torch.Tensor:
        """More input -> the output samples it completes [n]."""
        self.held = torch.cat([self.held, samples])
        return self._give(max(0, (self.taken - self.filter.width) // self.orig) * self.new, final=False)

    def flush(self) -> torch.Tensor:
        """The utterance's end -> its remaining output samples, ceil(input * new / orig) in all."""
        return self._give(-(-self.taken * self.new // self.orig), final=True)

    def _give(self, upto: int, final: bool) -> torch.Tensor:
        if upto <= self.made:
            return torch.zeros(0)
        low = max(0, self.made // self.new - self.reach)  # first conv position whose inputs we read
        span = self.held[low * self.orig - self.first :]
        if final:
            span = F.pad(span, (0, self.filter.width + self.orig))  # the silence after the utterance
        out = self.filter(span)[self.made - low * self.new : upto - low * self.new]
        self.made = upto
        keep = max(0, upto // self.new - self.reach) * self.orig
        self.held, self.first = self.held[keep - self.first :].clone(), keep
        return out


class _HeardAudio:
    """What one live chunk hears: the model-rate timeline from frame `first` on, read as
    audio_context.StreamAudio reads a whole track (silence before frame 0)."""

    def __init__(self, stream: StreamAudio, first: int):
        self.stream, self.first = stream, first

    def windows(self, start: int, end: int) -> torch.Tensor:
        """Context windows of frames [start, end) of the talk -> [1, end - start, W, L, C]."""
        return self.stream.windows(start - self.first, end - self.first)


@dataclass(frozen=True)
class _Job:
    """A chunk taken for rendering, with the audio it hears and hands out."""

    chunk: Chunk
    heard: torch.Tensor  # model-rate samples from frame `heard_from` to the chunk's end
    heard_from: int
    said: torch.Tensor  # input-rate samples of the frames the chunk adds
    done: list[SegmentDone]


class LiveTalk:
    """A talk fed as audio arrives (see the module docstring): `push`, `end`, `clear`, `stop`, and
    `poll` for what is ready."""

    def __init__(
        self,
        pipe: RAPPipeline,
        image,
        sample_rate: int,
        seed: int = 0,
        framing=None,
        face_box: tuple[float, float, float, float] | None = None,
        **options,
    ):
        """image, seed, framing and face_box as for `RAPPipeline.stream`; sample_rate: of the pushed
        audio, a whole number of samples per video frame (8000, 16000, 22050, 24000, 44100, 48000 Hz
        ...). options: SamplingConfig fields; `chunk_latents` sets the chunk and so the latency (a
        frame waits for (chunk_latents - overlap) latent frames of audio): the preset's live_chunk_latents
        by default, else its chunk_latents."""
        context = options.pop("audio_context", LIVE_CONTEXT)
        if context != LIVE_CONTEXT:
            raise RAPInputError(
                f"A live talk hears audio as it arrives, so it uses the '{LIVE_CONTEXT}' audio context (each chunk "
                f"hears the 8 s before its end); got '{context}'. Leave audio_context unset."
            )
        config = pipe.config
        self.pipe, self.fps, self.sample_rate = pipe, config.fps, int(sample_rate)
        self.model_rate = config.audio.sample_rate
        audio_to_mono(torch.zeros(1), sample_rate, self.model_rate)  # refuses rates it cannot resample
        for rate in (self.sample_rate, self.model_rate):
            if rate % self.fps:
                raise RAPInputError(
                    f"Live audio at {rate} Hz does not hold a whole number of samples per video frame "
                    f"({self.fps} fps); resample it to a multiple of {self.fps} Hz (8000, 16000, 22050, 24000, "
                    "44100, 48000 Hz ...)."
                )
        live_chunk = config.sampling.live_chunk_latents or config.sampling.chunk_latents
        self.sampling = pipe.sampling(audio_context=LIVE_CONTEXT, **{"chunk_latents": live_chunk, **options})
        stride = pipe.vae.temporal_stride
        clip = covered_video_frames(self.sampling.chunk_latents, stride)
        self._cache_samples = round(config.audio.context_seconds * self.model_rate)  # as StreamAudio hears
        if clip > self._cache_samples // self._model_frame_samples:
            raise RAPInputError(
                f"A chunk of {self.sampling.chunk_latents} latent frames ({clip} video frames) is longer than the "
                f"{config.audio.context_seconds} s of audio a streaming chunk hears; lower chunk_latents."
            )
        framed = pipe.frame(image, framing)
        picture = framed.picture().to(pipe.device, pipe.dtype)  # [3, H, W]
        self._talk, self._reference = Talk.start(
            self.sampling,
            pipe.dit,
            pipe.vae,
            picture,
            seed,
            None,
            leads=True,
            face_box=framed.face_box() if face_box is None else face_box,
        )
        self.step = self._talk.chunks.step  # frames each chunk adds
        self._lock = threading.Lock()
        self._said, self._heard = _Track(), _Track()  # input-rate audio not yet handed out; model-rate audio
        self._resampler: _Resampler | None = None  # of the open utterance, when resampling
        self._utterance: int | None = None  # first frame of the open utterance
        self._ends: list[SegmentDone] = []  # ended utterances not yet wholly handed out
        self._taken = 0  # chunks taken for rendering
        self._stopped = False

    @property
    def frames_taken(self) -> int:
        """Frames rendered or being rendered: the next chunk adds frames from here."""
        return self._taken * self.step

    @property
    def queued_seconds(self) -> float:
        """Audio pushed (or padded) and not yet taken for rendering, in seconds."""
        return (self._said.end - self.frames_taken * self._frame_samples) / self.sample_rate

    @property
    def held_samples(self) -> int:
        """Audio samples held in memory, of both rates: the queue, the 8 s the next chunk hears, the
        resampler's reach."""
        resampling = 0 if self._resampler is None else self._resampler.held.numel()
        return (self._said.end - self._said.start) + (self._heard.end - self._heard.start) + resampling

    @property
    def _frame_samples(self) -> int:
        return self.sample_rate // self.fps

    @property
    def _model_frame_samples(self) -> int:
        return self.model_rate // self.fps

    def push(self, samples) -> None:
        """Queue mono audio [n] at the session's sample rate: float in -1..1 or integer PCM (int16 ...).
        The first push after `end`, `clear` or the start opens an utterance at the next chunk boundary."""
        audio = torch.as_tensor(samples)
        if audio.ndim != 1:
            raise RAPInputError(
                f"Live audio is pushed as mono samples shaped [samples]; got shape {tuple(audio.shape)}. Average the "
                "channels (or de-interleave PCM) first."
            )
        if audio.numel() == 0:
            return
        mono = audio_to_mono(audio, self.sample_rate, self.sample_rate)  # [n] float32, checked
        with self._lock:
            self._check_running()
            if self._utterance is None:
                self._utterance = self._said.end // self._frame_samples
                resampling = self.sample_rate != self.model_rate
                self._resampler = _Resampler(self.sample_rate, self.model_rate) if resampling else None
            self._said.append(mono)
            self._heard.append(mono if self._resampler is None else self._resampler.feed(mono))

    def end(self) -> None:
        """The open utterance is complete: render all of it. Its last chunk is completed with silence;
        a `SegmentDone` follows its ceil(seconds * fps) frames. Without an open utterance, nothing."""
        with self._lock:
            self._check_running()
            if self._utterance is None:
                return
            if self._resampler is not None:
                self._heard.append(self._resampler.flush())
            frames = -(-(self._said.end - self._utterance * self._frame_samples) // self._frame_samples)
            self._ends.append(SegmentDone(self._utterance, frames))
            boundary = -(-(self._utterance + frames) // self.step) * self.step
            self._said.pad_to(boundary * self._frame_samples)
            self._heard.pad_to(boundary * self._model_frame_samples)
            self._utterance, self._resampler = None, None

    def clear(self) -> None:
        """Interrupt: drop all audio not yet taken for rendering, the open utterance and unrendered
        ends with it. The next push starts a new utterance right after the frames already rendered."""
        with self._lock:
            taken = self.frames_taken
            self._said.keep(self._said.start, taken * self._frame_samples)
            self._heard.keep(self._heard.start, taken * self._model_frame_samples)
            self._ends = []  # those of rendered frames went out with them
            self._utterance, self._resampler = None, None

    def stop(self) -> None:
        """End the session: drop everything queued; later pushes are refused and polls give nothing."""
        with self._lock:
            self._stopped = True
            self._said, self._heard, self._ends, self._utterance, self._resampler = _Track(), _Track(), [], None, None

    def _check_running(self) -> None:
        if self._stopped:
            raise RAPInputError("This live talk was stopped; start a new LiveTalk to go on.")

    def poll(self, now: float | None = None) -> list[LiveItem]:
        """Render the next chunk if its audio is all in -> [LiveVideo, LiveAudio, SegmentDone...], else [].

        now: the session's clock, in seconds on the pts scale (frame i is due at i / fps). With it,
        while no utterance is open and nothing is queued, a chunk of silence is rendered whenever the
        frames so far end at or before `now`, so the stream keeps pace with the clock. One chunk per
        call: call again until it returns [] (from one thread)."""
        with self._lock:
            job = None if self._stopped else self._take(now)
        if job is None:
            return []
        video = self._render(job)
        return [video, LiveAudio(video.index * self._frame_samples, job.said, self.sample_rate), *job.done]

    def _take(self, now: float | None) -> _Job | None:
        """The next chunk and its audio, if ready (or due as silence); trims what no later chunk needs."""
        first, end = self.frames_taken, self.frames_taken + self.step
        idle = now is not None and self._utterance is None and first / self.fps <= now
        if self._heard.end < end * self._model_frame_samples:
            if not idle:
                return None
            self._said.pad_to(end * self._frame_samples)
            self._heard.pad_to(end * self._model_frame_samples)
        chunk = self._talk.chunks[self._taken]
        heard_from = self._heard.start // self._model_frame_samples
        job = _Job(
            chunk,
            self._heard.read(self._heard.start, end * self._model_frame_samples),
            heard_from,
            self._said.read(first * self._frame_samples, end * self._frame_samples),
            [done for done in self._ends if done.first + done.frames <= end],
        )
        self._ends = [done for done in self._ends if done.first + done.frames > end]
        self._taken += 1
        following = end + self.step  # the next chunk's end: it hears the cache before it
        keep_from = max(0, following * self._model_frame_samples - self._cache_samples) // self._model_frame_samples
        self._heard.keep(keep_from * self._model_frame_samples, self._heard.end)
        self._said.keep(end * self._frame_samples, self._said.end)
        return job

    @torch.no_grad()
    def _render(self, job: _Job) -> LiveVideo:
        heard = _HeardAudio(StreamAudio(self.pipe.audio_encoder, job.heard, self.pipe.config), job.heard_from)
        _, video = advance(self._talk, self.pipe.dit, self.pipe.vae, heard, self._reference, decode=True)
        frames = chunk_frames(job.chunk, video)  # [step, H, W, 3]
        return LiveVideo(job.chunk.start + job.chunk.emit_from, frames, self.fps)
