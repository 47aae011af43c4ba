"""Media in and out: audio -> mono at the model's rate, image -> model size, frames + audio -> mp4."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import warnings
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from einops import rearrange

from .checks import check_frame_range
from .errors import RAPInputError

_MAX_SAMPLE = 2.0**31  # largest accepted |sample|: int32 PCM full scale
_MAX_RESAMPLE_RATIO = 1 << 24  # largest reduced down * up: torchaudio's filter bank has about that many taps


def audio_to_mono(waveform, sample_rate: int, target_rate: int = 16000) -> torch.Tensor:
    """waveform [S], [C, S] or [B, C, S] (ComfyUI AUDIO; only the first item of a batch is used)
    -> [S'] float32 mono at `target_rate`, S' = ceil(S * target_rate / sample_rate).

    Channels are averaged; resampling is torchaudio's band-limited sinc interpolation. Integer PCM
    is scaled to -1..1 (int16 by 1/32768, 8-bit offset binary around 128).
    Loudness is left alone: the wav2vec2 encoder normalises every clip itself, so quiet,
    loud and silent audio are all accepted. Refused: samples beyond +-2^31 (no PCM format goes
    there; they overflow the encoders) and rates whose ratio to `target_rate` reduces only to
    large numbers (44101 Hz: 44101/16000), whose torchaudio filter bank would take gigabytes.
    """
    audio = torch.as_tensor(waveform).detach()
    if audio.ndim not in (1, 2, 3):
        raise RAPInputError(
            f"Audio must be shaped [samples], [channels, samples] or [batch, channels, samples]; "
            f"got a {audio.ndim}-D tensor of shape {tuple(audio.shape)}."
        )
    if audio.ndim == 3:
        if audio.shape[0] == 0:
            raise RAPInputError("The audio batch is empty: give at least one clip.")
        audio = audio[0]
    if audio.numel() == 0:
        raise RAPInputError(
            f"The audio is empty (shape {tuple(audio.shape)}): give a clip with at least one sample."
        )
    for name, rate in (("sample_rate", sample_rate), ("target_rate", target_rate)):
        if not float(rate).is_integer() or rate <= 0:
            raise RAPInputError(f"Audio {name} must be a positive whole number of Hz, got {rate}.")
    if audio.dtype == torch.uint8:  # 8-bit PCM is offset binary: 128 is silence
        audio = (audio.to(torch.float32) - 128.0) / 128.0
    elif not audio.is_floating_point() and audio.dtype != torch.bool:  # signed PCM: full scale -> 1.0
        audio = audio.to(torch.float32) / 2.0 ** (torch.iinfo(audio.dtype).bits - 1)
    audio = audio.to(torch.float32)
    if not torch.isfinite(audio).all():
        raise RAPInputError(
            "The audio contains NaN or infinite samples; decode or export it again as ordinary PCM audio."
        )
    low, high = torch.aminmax(audio)
    peak = max(-low.item(), high.item())
    if peak > _MAX_SAMPLE:
        raise RAPInputError(
            f"The audio's samples reach a magnitude of {peak:.3g}; expected PCM levels (float audio about "
            f"-1..1, integer PCM at most 2^31). Decode or export it again as ordinary PCM audio."
        )
    mono = audio.mean(dim=0) if audio.ndim == 2 else audio  # [S]
    rate, target = int(sample_rate), int(target_rate)
    if rate == target:
        return mono.contiguous()
    down, up = rate // math.gcd(rate, target), target // math.gcd(rate, target)
    if down * up > _MAX_RESAMPLE_RATIO:
        raise RAPInputError(
            f"Audio at {rate} Hz cannot be resampled to {target} Hz in bounded memory: the rates only reduce "
            f"to {down}:{up}. Expected a common rate (8000, 16000, 22050, 44100, 48000 Hz ...); "
            f"resample the audio to one of them first."
        )
    length = -(-mono.numel() * target // rate)  # ceil(S * target / rate), exact
    # torchaudio sizes its output in float32, which drops the last sample of some long clips: resample
    # with 1 s of extra silence (its filter sees silence past the end anyway) and cut the exact length.
    return AF.resample(F.pad(mono, (0, rate)), rate, target)[:length].contiguous()


def audio_for_frames(waveform, sample_rate: int, fps: int, first: int, end: int) -> torch.Tensor:
    """The sound of video frames [first, end): waveform [C, S] -> [C, S'] with samples
    [floor(first * sr / fps), floor(end * sr / fps)); silence where the frames outlast the audio.
    Consecutive frame ranges give consecutive, non-overlapping pieces."""
    check_frame_range("Video", first, end, "first")
    wave = torch.as_tensor(waveform)
    low, high = first * sample_rate // fps, end * sample_rate // fps
    piece = wave.new_zeros(wave.shape[0], high - low)  # [C, S']
    available = wave[:, low:high]  # [C, <= S']
    piece[:, : available.shape[1]] = available
    return piece


_FLOAT_SLACK = 1e-3  # float images may overshoot [0, 1] by this much (rounding in upstream nodes)
_VIDEO_CODECS = ("libx264", "h264", "mpeg4")  # first one this PyAV build can encode is used
_X264_OPTIONS = {"crf": "18"}  # visually lossless; preset stays x264's default ("medium")


def _tensor(array) -> torch.Tensor:
    """torch.as_tensor that copies read-only numpy arrays (np.asarray of a PIL image) instead of warning."""
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array).detach()


def cover_and_crop(in_h: int, in_w: int, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """FlashHead's `resize_and_centercrop` geometry for an in_h x in_w image and a height x width
    target -> ((cover_h, cover_w), (top, left)): the size that covers the target keeping the aspect
    ratio, ceil(side * max(height / in_h, width / in_w)), and torchvision's centre-crop offsets
    (halves rounded to even)."""
    scale = max(Fraction(height, in_h), Fraction(width, in_w))  # exact, so a matching side never rounds up
    cover_h, cover_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    return (cover_h, cover_w), (round((cover_h - height) / 2), round((cover_w - width) / 2))


def rgb_image(image) -> torch.Tensor:
    """A portrait as prepare_image takes it -> [H, W, 3] float32 in 0..1, checked: channels-last
    [H, W], [H, W, C] or [B, H, W, C] with C in {1, 3, 4}; float in [0, 1] or uint8. Of a batch only
    the first image is used (with a warning); alpha is composited on white, greyscale repeated."""
    x = _tensor(image)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255
    elif x.is_floating_point():
        x = x.to(torch.float32)
    else:
        raise RAPInputError(
            f"Images must be float in [0, 1] or uint8 in [0, 255], got dtype {x.dtype}; convert the image first."
        )
    if x.ndim == 4:
        if x.shape[0] == 0:
            raise RAPInputError("The image batch is empty: give one portrait image.")
        if x.shape[0] > 1:
            warnings.warn(f"Got a batch of {x.shape[0]} images; only the first is used as the portrait.", stacklevel=2)
        x = x[0]
    if x.ndim == 2:
        x = x[..., None]  # [H, W] -> [H, W, 1]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise RAPInputError(
            f"Images must be channels-last [H, W], [H, W, C] or [B, H, W, C] with C = 1, 3 or 4; "
            f"got shape {tuple(np.shape(image))}. A [C, H, W] tensor must be permuted to [H, W, C]."
        )
    in_h, in_w, channels = x.shape
    if x.numel() == 0:
        raise RAPInputError(f"The image is empty (shape {tuple(x.shape)}): give a picture with pixels.")
    if min(in_h, in_w) < 8:
        raise RAPInputError(f"The image is {in_w}x{in_h} pixels; give a portrait at least 8 pixels on each side.")
    if not torch.isfinite(x).all():
        raise RAPInputError("The image contains NaN or infinite values; load or export the picture again.")
    low, high = x.min().item(), x.max().item()
    if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
        raise RAPInputError(
            f"Float images must hold values in [0, 1], got [{low:.4g}, {high:.4g}]; "
            f"divide 0..255 pixel values by 255 (or pass them as uint8)."
        )
    x = x.clamp(0, 1)
    if channels == 4:
        alpha = x[..., 3:]
        x = x[..., :3] * alpha + (1 - alpha)  # straight alpha over a white background
    elif channels == 1:
        x = x.expand(in_h, in_w, 3)
    return x.contiguous()


def prepare_image(image, height: int, width: int) -> torch.Tensor:
    """Portrait image -> [3, height, width] float32 in [-1, 1] (0 -> -1, 1 -> 1), on the input's device.

    Channels-last input only (ComfyUI and numpy convention): [H, W], [H, W, C] or [B, H, W, C]
    with C in {1, 3, 4}; float in [0, 1] or uint8 in [0, 255]. Of a batch only the first image is
    used (with a warning). Alpha is composited on white (FlashHead instead drops it and keeps whatever
    colour hides under transparent pixels), greyscale is repeated to RGB.
    Geometry follows FlashHead's `resize_and_centercrop`: scale by max(height/H, width/W) to
    ceil(H*s) x ceil(W*s) so the image covers the target, keeping its aspect ratio (bilinear,
    antialiased when shrinking), then crop the centre with torchvision's `center_crop` offsets (halves
    rounded to even, so an odd margin puts the extra pixel above or below by parity).
    """
    for name, size in (("height", height), ("width", width)):
        if not float(size).is_integer() or size < 1:
            raise RAPInputError(f"Target image {name} must be a positive whole number of pixels, got {size}.")
    height, width = int(height), int(width)
    x = rgb_image(image)  # [H, W, 3]
    in_h, in_w, _ = x.shape
    x = rearrange(x, "h w c -> 1 c h w")  # [1, 3, H, W]
    (cover_h, cover_w), (top, left) = cover_and_crop(in_h, in_w, height, width)
    if (cover_h, cover_w) != (in_h, in_w):
        x = F.interpolate(x, size=(cover_h, cover_w), mode="bilinear", align_corners=False, antialias=True)
    x = x[0, :, top : top + height, left : left + width]  # [3, height, width]
    return (x * 2 - 1).clamp(-1, 1).contiguous()


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
    x = _tensor(chunk)
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
        wave = _tensor(audio).to("cpu", torch.float32)
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
