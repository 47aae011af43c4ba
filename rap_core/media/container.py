"""Container I/O with PyAV: audio and image files in, frames and audio out as an H.264/AAC mp4."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np
import torch

from ..errors import RAPInputError
from .normalise import tensor_of

_VIDEO_CODECS = ("libx264", "h264", "mpeg4")  # first one this PyAV build can encode is used
_X264_OPTIONS = {"crf": "18"}  # visually lossless; preset stays x264's default ("medium")


def _video_codec() -> str:
    for name in _VIDEO_CODECS:
        try:
            av.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        return name
    raise RAPInputError(
        f"This PyAV build can encode none of {_VIDEO_CODECS}; install the PyPI wheel of `av`, which ships libx264."
    )


def _frames_uint8(chunk) -> np.ndarray:
    """Chunk [n, H, W, 3] float 0..1 (or uint8), torch or numpy -> [n, H, W, 3] uint8 numpy."""
    x = tensor_of(chunk)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise RAPInputError(f"Video chunks must be shaped [frames, height, width, 3]; got {tuple(x.shape)}.")
    if x.dtype != torch.uint8:
        x = x.to(torch.float32)  # converted on the chunk's device: 4x less to copy to the CPU
        if not torch.isfinite(x).all():
            raise RAPInputError("A video chunk contains NaN or infinite values; the generation diverged.")
        x = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.cpu().numpy()


class _AudioTrack:
    """An AAC stream fed from a float waveform up to a given sample, so audio interleaves with video."""

    def __init__(self, audio, sample_rate):
        if sample_rate is None or not float(sample_rate).is_integer() or sample_rate <= 0:
            raise RAPInputError(f"Audio needs its sample_rate as a positive whole number of Hz, got {sample_rate}.")
        wave = tensor_of(audio).to("cpu", torch.float32)
        wave = wave[None] if wave.ndim == 1 else wave  # [S] -> [1, S]
        if wave.ndim != 2 or wave.shape[0] not in (1, 2) or wave.shape[1] == 0:
            raise RAPInputError(
                f"Audio for the video must be [samples] or [channels, samples] with 1 or 2 channels; "
                f"got {tuple(np.shape(audio))}. Downmix to stereo or mono first."
            )
        if not torch.isfinite(wave).all():
            raise RAPInputError("The audio contains NaN or infinite samples; it cannot be encoded.")
        self.wave = wave.numpy()  # [C, S]
        self.rate = int(sample_rate)
        self.layout = "mono" if wave.shape[0] == 1 else "stereo"
        self.stream, self.sent = None, 0

    def open(self, container) -> None:
        self.stream = container.add_stream("aac", rate=self.rate, layout=self.layout)

    def encode_until(self, end: int) -> list:
        """Packets for samples [sent, end) (end clipped to the waveform)."""
        end = min(end, self.wave.shape[1])
        if end <= self.sent:
            return []
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(self.wave[:, self.sent : end]), format="fltp", layout=self.layout
        )
        frame.sample_rate, frame.pts, frame.time_base = self.rate, self.sent, Fraction(1, self.rate)
        self.sent = end
        return self.stream.encode(frame)

    def finish(self) -> list:
        return self.encode_until(self.wave.shape[1]) + self.stream.encode(None)


def write_mp4(path, frames: Iterable, fps, audio=None, sample_rate: int | None = None) -> int:
    """Stream video chunks (and optional audio) into an H.264/AAC mp4, atomically; returns frames written.

    frames: iterable of chunks [n, H, W, 3], float 0..1 (clipped) or uint8, torch or numpy, pulled
    and encoded one at a time, so memory stays bounded by one chunk plus the encoder's lookahead.
    H and W must be even (yuv420p). audio: [S] or [C, S] float (C = 1 or 2) at `sample_rate`,
    AAC-encoded interleaved with the video: after each chunk, the audio up to that chunk's end
    time is encoded; the rest follows the last chunk. The audio is written whole, whatever the
    video length. The file is written to a hidden temporary file beside `path`, synced, then
    renamed onto `path`; on any error or interruption the temporary file is deleted and an
    existing file at `path` stays untouched.
    """
    if not (math.isfinite(float(fps)) and fps > 0):
        raise RAPInputError(f"fps must be a positive, finite number of frames per second, got {fps}.")
    fps = Fraction(fps).limit_denominator(1001)  # 25 -> 25/1, 29.97 -> 2997/100, 30000/1001 stays
    track = None if audio is None else _AudioTrack(audio, sample_rate)
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp-{secrets.token_hex(4)}.mp4")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    container = None
    try:
        container = av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"})
        video, count = None, 0
        for chunk in frames:
            pixels = _frames_uint8(chunk)  # [n, H, W, 3]
            if video is None:
                video = _open_streams(container, pixels.shape[1:3], fps, track)
            elif (video.height, video.width) != pixels.shape[1:3]:
                raise RAPInputError(
                    f"Video chunks changed size from {video.width}x{video.height} to "
                    f"{pixels.shape[2]}x{pixels.shape[1]}; every frame of a video must have the same size."
                )
            for image in pixels:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = count
                container.mux(video.encode(frame))
                count += 1
            if track is not None:
                container.mux(track.encode_until(int(count * track.rate / fps)))
        if video is None:
            raise RAPInputError("No video frames were given; there is nothing to write.")
        container.mux(video.encode(None))
        if track is not None:
            container.mux(track.finish())
        container.close()
        with open(tmp, "r+b") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    if os.name == "posix":
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return count


def _open_streams(container, size, fps, track):
    """Add the video stream (and the audio track, if any) once the frame size is known."""
    height, width = size
    if height % 2 or width % 2:
        raise RAPInputError(
            f"Video frames are {width}x{height}; H.264 (yuv420p) needs an even width and height. "
            f"Use an even image size."
        )
    codec = _video_codec()
    video = container.add_stream(codec, rate=fps, options=_X264_OPTIONS if codec == "libx264" else {})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    if track is not None:
        track.open(container)
    return video


def probe_mp4(path) -> dict:
    """Read a video back by decoding every packet.

    Returns frames (decoded video frames), fps (the stream's average rate), width, height,
    video_seconds = frames / fps, and audio_seconds = decoded audio samples / sample rate,
    capped at the stream's declared duration (None without an audio stream). AAC codes
    1024-sample frames: the mp4 edit list drops the 1024 priming samples on decode, but FFmpeg
    still decodes the zero padding of the last frame (up to 1023 samples, 64 ms at 16 kHz);
    the declared duration is the source's exact length, which is what players honour.
    """
    with av.open(os.fspath(path)) as container:
        if not container.streams.video:
            raise RAPInputError(f"'{path}' has no video stream.")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate)
        frames, samples, rate, size = 0, 0, None, (stream.height, stream.width)
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames += 1
                    size = (frame.height, frame.width)
                elif isinstance(frame, av.AudioFrame):
                    samples, rate = samples + frame.samples, frame.sample_rate
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_seconds = samples / rate if rate else 0.0
        if audio is not None and audio.duration:
            audio_seconds = min(audio_seconds, float(audio.duration * audio.time_base))
    return {
        "frames": frames,
        "fps": fps,
        "width": size[1],
        "height": size[0],
        "video_seconds": frames / fps,
        "audio_seconds": None if audio is None else audio_seconds,
    }


def _check_exists(path, what: str) -> None:
    if not os.path.isfile(path):
        raise RAPInputError(f"{what} file '{os.fspath(path)}' does not exist; check the path.")


def read_audio(path) -> tuple[torch.Tensor, int]:
    """Decode any audio file PyAV reads (wav, mp3, flac, m4a, the audio of a video)
    -> (waveform [C, S] float32, sample_rate)."""
    _check_exists(path, "Audio")
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.audio:
                raise RAPInputError(f"'{path}' has no audio stream; give a speech recording (wav, mp3, flac ...).")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            to_float = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=rate)
            chunks = [
                out.to_ndarray() for frame in container.decode(stream) for out in to_float.resample(frame)
            ]  # [C, n] each
            chunks += [out.to_ndarray() for out in to_float.resample(None)]
    except av.FFmpegError as error:
        raise RAPInputError(f"Could not decode audio file '{path}' ({error}); convert it to wav or mp3.") from error
    if not chunks:
        raise RAPInputError(f"Audio file '{path}' holds no samples; give a recording with speech in it.")
    return torch.from_numpy(np.concatenate(chunks, axis=1)).float(), rate


def read_image(path) -> torch.Tensor:
    """Read an image file (png, jpg, webp ...) -> [H, W, C] float32 in 0..1 (C = 1, 3 or 4)."""
    from PIL import Image, UnidentifiedImageError

    _check_exists(path, "Image")
    try:
        with Image.open(os.fspath(path)) as image:
            mode = image.mode if image.mode in ("L", "RGB", "RGBA") else ("RGBA" if "A" in image.getbands() else "RGB")
            array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as error:
        raise RAPInputError(f"Could not read image '{path}' ({error}); give a png or jpg file.") from error
    return torch.from_numpy(array)
