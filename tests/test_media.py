"""Portrait image normalisation and streaming, atomic mp4 writing read back by decoding."""

import math
import os

import av
import numpy as np
import pytest
import torch

from rap_core.errors import RAPInputError
from rap_core.media.container import probe_mp4, write_mp4
from rap_core.media.normalise import prepare_image

RED, GREEN, BLUE, WHITE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 1.0)


def solid(height, width, colour):
    """[height, width, 3] float image of one colour."""
    return torch.tensor(colour).expand(height, width, 3).clone()


def rgb01(image):
    """prepare_image output [3, H, W] in [-1, 1] -> [H, W, 3] in [0, 1]."""
    return (image.permute(1, 2, 0) + 1) / 2


def test_transparent_region_becomes_white_and_opaque_pixels_keep_their_colour():
    rgba = torch.zeros(200, 300, 4)
    rgba[..., 0], rgba[..., 3] = 1.0, 1.0  # opaque red
    rgba[60:140, 100:200, :3], rgba[60:140, 100:200, 3] = 0.0, 0.0  # a fully transparent black hole
    out = rgb01(prepare_image(rgba, 100, 150))  # same aspect: pure 2x downscale
    assert out.shape == (100, 150, 3)
    torch.testing.assert_close(out[35:65, 55:95], solid(30, 40, WHITE), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:25], solid(25, 150, RED), atol=1e-5, rtol=0)


def test_wide_image_is_scaled_to_cover_and_centre_cropped():
    wide = solid(100, 300, RED)
    wide[:, :60] = torch.tensor(GREEN)  # bands that lie outside the centred square
    wide[:, 240:] = torch.tensor(BLUE)
    out = rgb01(prepare_image(wide, 64, 64))
    torch.testing.assert_close(out, solid(64, 64, RED), atol=1e-5, rtol=0)


def test_tall_image_loses_top_and_bottom_and_keeps_its_aspect():
    tall = torch.zeros(400, 100, 3)
    tall[140:260] = 1.0  # a white band in the middle of a black strip
    out = rgb01(prepare_image(tall, 32, 32))  # 400x100 -> 128x32, keep rows 48..80 (white from 44.8 to 83.2)
    torch.testing.assert_close(out, solid(32, 32, WHITE), atol=1e-5, rtol=0)
    out = rgb01(prepare_image(tall, 128, 32))  # the whole strip, black above and below the band
    assert out[48:80].min().item() > 1 - 1e-5
    assert out[:40].abs().max().item() < 1e-5 and out[88:].abs().max().item() < 1e-5


@pytest.mark.parametrize("shape", [(40, 60), (40, 60, 1)])
def test_greyscale_becomes_three_equal_channels(shape):
    grey = torch.linspace(0, 1, 40 * 60).reshape(shape)
    out = prepare_image(grey, 40, 60)
    assert out.shape == (3, 40, 60)
    torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)
    torch.testing.assert_close(out[0], out[2], atol=0, rtol=0)
    torch.testing.assert_close(out[0], grey.reshape(40, 60) * 2 - 1)


def test_batch_uses_the_first_image_and_warns():
    batch = torch.stack([solid(32, 32, GREEN), solid(32, 32, BLUE)])  # ComfyUI IMAGE [B, H, W, C]
    with pytest.warns(UserWarning, match="first"):
        out = prepare_image(batch, 32, 32)
    torch.testing.assert_close(rgb01(out), solid(32, 32, GREEN))


def test_value_mapping_is_exact_for_float_and_uint8():
    image = torch.zeros(16, 16, 3)
    image[:, 8:] = 1.0
    out = prepare_image(image, 16, 16)
    assert out.dtype == torch.float32
    assert torch.equal(out[:, :, :8], torch.full((3, 16, 8), -1.0))
    assert torch.equal(out[:, :, 8:], torch.full((3, 16, 8), 1.0))
    as_uint8 = prepare_image((image.numpy() * 255).astype(np.uint8), 16, 16)
    assert torch.equal(as_uint8, out)
    assert torch.equal(prepare_image(torch.full((20, 30, 3), 0.5), 10, 10), torch.zeros(3, 10, 10))


@pytest.mark.parametrize(
    "image, words",
    [
        (torch.full((32, 32, 3), float("nan")), "NaN"),
        (torch.zeros(0, 32, 3), "empty"),
        (torch.zeros(0, 32, 32, 3), "empty"),
        (torch.zeros(32, 32, 2), "C = 1, 3 or 4"),
        (torch.zeros(3, 32, 32), "permuted"),
        (torch.zeros(4, 32, 3), "at least 8"),
        (torch.full((32, 32, 3), 255.0), "divide"),
        (torch.zeros(32, 32, 3, dtype=torch.int64), "uint8"),
    ],
)
def test_bad_images_are_refused_with_a_hint(image, words):
    with pytest.raises(RAPInputError, match=words):
        prepare_image(image, 32, 32)


def test_slight_overshoot_is_accepted_and_clipped():
    out = prepare_image(torch.full((16, 16, 3), 1.0005), 16, 16)
    assert torch.equal(out, torch.ones(3, 16, 16))


def coloured_chunks(height=48, width=64):
    """37 frames in three chunks (torch, numpy, torch): 16 red, 16 green, 5 blue."""
    yield solid(height, width, RED).expand(16, -1, -1, -1)
    yield np.broadcast_to(np.array(GREEN, np.float32), (16, height, width, 3))
    yield solid(height, width, BLUE).expand(5, -1, -1, -1)


def decode(path):
    """All decoded video frames [N, H, W, 3] float 0..1, audio [C, S] float, and packet positions."""
    images, sound, positions = [], [], {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pos is not None and packet.size:
                positions[packet.stream.type].append(packet.pos)
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    images.append(frame.to_ndarray(format="rgb24"))
                else:
                    sound.append(frame.to_ndarray())
    return np.stack(images) / 255.0, np.concatenate(sound, axis=1), positions


def test_mp4_round_trip_frames_colours_and_audio(tmp_path):
    rate, seconds = 44100, 1.48
    t = np.arange(round(rate * seconds)) / rate
    tone = np.stack([0.5 * np.sin(2 * math.pi * 440 * t), 0.3 * np.sin(2 * math.pi * 440 * t)]).astype(np.float32)
    path = tmp_path / "talk.mp4"
    written = write_mp4(path, coloured_chunks(), 25, audio=torch.from_numpy(tone), sample_rate=rate)

    info = probe_mp4(path)
    assert written == info["frames"] == 37
    assert (info["width"], info["height"], info["fps"]) == (64, 48, 25.0)
    assert info["video_seconds"] == pytest.approx(1.48)
    assert abs(info["audio_seconds"] - seconds) < 1 / 25

    frames, sound, positions = decode(path)
    for index, colour in ((0, RED), (20, GREEN), (36, BLUE)):
        np.testing.assert_allclose(frames[index].mean(axis=(0, 1)), colour, atol=0.03)
    spectrum = np.abs(np.fft.rfft(sound[0]))
    assert np.fft.rfftfreq(sound.shape[1], 1 / rate)[spectrum.argmax()] == pytest.approx(440, abs=2)
    assert sound.shape[0] == 2
    assert min(positions["audio"]) < max(positions["video"])  # audio interleaved, not appended


def test_mono_audio_keeps_its_exact_length_and_ntsc_rate_survives(tmp_path):
    """1.48 s at 16 kHz: AAC pads the last 1024-sample frame by 56 ms, more than a video frame;
    the reported length is still the source's."""
    path = tmp_path / "mono.mp4"
    silence = np.zeros(23680)
    count = write_mp4(path, [np.zeros((44, 32, 32, 3), np.float32)], 30000 / 1001, silence, 16000)
    info = probe_mp4(path)
    assert count == info["frames"] == 44
    assert info["fps"] == pytest.approx(30000 / 1001)
    assert info["audio_seconds"] == pytest.approx(1.48, abs=1e-9)


def test_video_is_written_while_the_chunks_stream(tmp_path):
    """Encoded data reaches a hidden temporary file while the generator still runs; `path` appears at the end."""
    path = tmp_path / "long.mp4"
    sizes = []

    def noisy():
        g = torch.Generator().manual_seed(0)
        for _ in range(12):
            temporary = [name for name in os.listdir(tmp_path) if name.startswith(".long.mp4.tmp-")]
            assert not path.exists() and len(temporary) == 1
            sizes.append(os.path.getsize(tmp_path / temporary[0]))
            yield torch.rand(16, 96, 128, 3, generator=g)

    assert write_mp4(path, noisy(), 25) == 192
    assert sizes[-1] > sizes[0] and sizes[-1] > 100_000
    assert os.listdir(tmp_path) == ["long.mp4"]
    assert probe_mp4(path)["audio_seconds"] is None


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, error):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous video")

    def failing():
        yield torch.rand(8, 32, 32, 3)
        yield torch.rand(8, 32, 32, 3)
        raise error("cancelled")

    with pytest.raises(error):
        write_mp4(path, failing(), 25, audio=np.zeros(16000, np.float32), sample_rate=16000)
    assert os.listdir(tmp_path) == ["out.mp4"]
    assert path.read_bytes() == b"previous video"


@pytest.mark.parametrize(
    "chunks, words",
    [
        ([torch.zeros(4, 33, 32, 3)], "even"),
        ([], "No video frames"),
        ([torch.zeros(4, 32, 32, 3), torch.zeros(4, 64, 64, 3)], "same size"),
        ([torch.full((4, 32, 32, 3), float("nan"))], "NaN"),
        ([torch.zeros(32, 32, 3)], r"\[frames, height, width, 3\]"),
    ],
)
def test_bad_video_is_refused_and_leaves_nothing(tmp_path, chunks, words):
    with pytest.raises(RAPInputError, match=words):
        write_mp4(tmp_path / "bad.mp4", chunks, 25)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "audio, rate, words",
    [
        (np.zeros((3, 1000)), 16000, "Downmix"),
        (np.full(1000, np.nan), 16000, "NaN"),
        (np.zeros(1000), None, "sample_rate"),
    ],
)
def test_bad_audio_is_refused_before_any_frame_is_pulled(tmp_path, audio, rate, words):
    pulled = []

    def chunks():
        pulled.append(1)
        yield torch.zeros(4, 32, 32, 3)

    with pytest.raises(RAPInputError, match=words):
        write_mp4(tmp_path / "bad.mp4", chunks(), 25, audio, rate)
    assert pulled == [] and os.listdir(tmp_path) == []
