"""Audio path: FlashHead's wav2vec2 recipe, per-frame windows, local loading, mono 16 kHz input."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

from rap_core.config import get_preset
from rap_core.errors import CheckpointError, MissingWeightsError, RAPInputError
from rap_core.loading import load_wav2vec2
from rap_core.media.normalise import audio_to_mono
from rap_core.models.audio import Wav2Vec2Encoder, build_wav2vec2, frame_windows, wav2vec2_config

REPO = "facebook/wav2vec2-base-960h"


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_wav2vec2(get_preset("tiny").audio)


def speech(batch=2, samples=16000, seed=1):
    """Noise plus a tone at a different loudness and offset per clip: [batch, samples]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    clips = [
        (0.3 + k) * torch.sin(2 * math.pi * (150 + 40 * k) * t) + 0.1 * torch.randn(samples, generator=g) + 0.05 * k
        for k in range(batch)
    ]
    return torch.stack(clips)


def native_frames(encoder, samples):
    return encoder.model.feature_extractor(torch.zeros(1, samples)).shape[-1]


@pytest.mark.parametrize("samples", [16000, 1200])
def test_features_equal_transformers_wav2vec2_at_native_rate(encoder, samples):
    audio = speech(samples=samples)
    native = native_frames(encoder, audio.shape[1])
    normalised = Wav2Vec2FeatureExtractor(do_normalize=True)(list(audio.numpy()), sampling_rate=16000).input_values
    with torch.no_grad():
        ours = encoder(audio, native)
        library = encoder.model(torch.tensor(np.stack(normalised)), output_hidden_states=True).hidden_states
    reference = torch.stack(library[1:], dim=2)  # [B, N, L, C]
    assert ours.dtype == torch.float32
    assert ours.shape == (2, native, 2, 16) == reference.shape
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_batch_items_and_loudness_do_not_change_features(encoder):
    audio = speech(batch=3)
    with torch.no_grad():
        batched = encoder(audio, 25)
        alone = encoder(audio[1:2], 25)
        louder = encoder(audio[1:2] * 20 + 0.3, 25)
    torch.testing.assert_close(batched[1:2], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(louder, alone, atol=1e-4, rtol=0)
    assert not torch.allclose(batched[0], batched[1], atol=1e-2)


def test_cnn_features_resample_linearly_to_video_frames(encoder):
    audio = speech(batch=1, samples=21120)  # 1.32 s -> 33 frames at 25 fps
    native = native_frames(encoder, 21120)
    with torch.no_grad():
        full = encoder.cnn_features(audio, native)[0]  # [N, D]
        video = encoder.cnn_features(audio, 33)[0]  # [33, D]
        one_second = encoder.cnn_features(audio[:, :16000], 25)[0]
        one_second_native = encoder.cnn_features(audio[:, :16000], native_frames(encoder, 16000))[0]
        features = encoder(audio, 33)
    assert video.shape == (33, full.shape[1]) and features.shape[1] == 33
    torch.testing.assert_close(video[0], full[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(video[-1], full[-1], atol=1e-6, rtol=0)
    position = torch.arange(33) * (native - 1) / 32  # align_corners=True: ends map onto ends
    low = position.floor().long()
    high = (low + 1).clamp(max=native - 1)
    weight = (position - low)[:, None]
    torch.testing.assert_close(video, (1 - weight) * full[low] + weight * full[high], atol=1e-5, rtol=0)
    torch.testing.assert_close(one_second, one_second_native[::2], atol=1e-6, rtol=0)  # 49 -> 25: every other


def test_windows_are_edge_clamped():
    frames = torch.arange(6.0)[None, :, None, None].expand(2, 6, 3, 4) + torch.tensor([0.0, 100.0])[:, None, None, None]
    windows = frame_windows(frames, 5)  # [2, 6, 5, 3, 4]
    expected = torch.tensor(
        [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 5], [3, 4, 5, 5, 5]],
        dtype=torch.float32,
    )
    assert windows.shape == (2, 6, 5, 3, 4)
    assert torch.equal(windows[0, :, :, 0, 0], expected)
    assert torch.equal(windows[1, :, :, 2, 3], expected + 100)
    assert torch.equal(frame_windows(frames[:, :1], 5)[0, 0, :, 0, 0], torch.zeros(5))
    assert torch.equal(frame_windows(frames, 3)[0, :, :, 0, 0][[0, 5]], torch.tensor([[0.0, 0, 1], [4, 5, 5]]))
    with pytest.raises(RAPInputError, match="odd"):
        frame_windows(frames, 4)


def test_large_layout_is_refused():
    config = wav2vec2_config(get_preset("tiny").audio)
    config.do_stable_layer_norm = True
    with pytest.raises(CheckpointError, match="wav2vec2-base"):
        Wav2Vec2Encoder(Wav2Vec2Model(config))


def test_too_short_audio_is_explained(encoder):
    with pytest.raises(RAPInputError, match="400"):
        encoder(torch.randn(1, 399), 1)
    with pytest.raises(RAPInputError, match=r"\[batch, samples\]"):
        encoder(torch.randn(16000), 25)


def test_load_round_trips_a_saved_model(encoder, tmp_path):
    encoder.model.save_pretrained(tmp_path)
    loaded = load_wav2vec2(tmp_path)
    audio = speech()
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio, 25), encoder(audio, 25), atol=0, rtol=0)
    assert not loaded.training


def test_load_reads_the_960h_checkpoint_layout(encoder, tmp_path):
    """The hub checkpoint is a Wav2Vec2ForCTC: 'wav2vec2.' prefix, old weight_g/weight_v names, a CTC head."""
    renamed = {
        "wav2vec2."
        + k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v.contiguous()
        for k, v in encoder.model.state_dict().items()
    }
    renamed |= {"lm_head.weight": torch.randn(32, 16), "lm_head.bias": torch.zeros(32)}
    assert "wav2vec2.encoder.pos_conv_embed.conv.weight_g" in renamed
    save_file(renamed, tmp_path / "model.safetensors")
    config = encoder.model.config.to_dict() | {"architectures": ["Wav2Vec2ForCTC"], "vocab_size": 32}
    (tmp_path / "config.json").write_text(json.dumps(config))
    audio = speech()
    with torch.no_grad():
        torch.testing.assert_close(load_wav2vec2(tmp_path)(audio, 25), encoder(audio, 25), atol=0, rtol=0)


def test_missing_files_name_file_folder_and_repo(encoder, tmp_path):
    absent = tmp_path / "wav2vec2-base-960h"
    cases = [(absent, "config.json")]
    encoder.model.save_pretrained(tmp_path / "no_config")
    (tmp_path / "no_config" / "config.json").unlink()
    cases.append((tmp_path / "no_config", "config.json"))
    encoder.model.save_pretrained(tmp_path / "no_weights")
    (tmp_path / "no_weights" / "model.safetensors").unlink()
    cases.append((tmp_path / "no_weights", "model.safetensors"))
    for folder, filename in cases:
        with pytest.raises(MissingWeightsError) as error:
            load_wav2vec2(folder)
        assert filename in str(error.value) and str(folder) in str(error.value) and REPO in str(error.value)


def test_incomplete_or_truncated_checkpoint_is_rejected(encoder, tmp_path):
    encoder.model.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in encoder.model.state_dict().items() if "layers.1." not in k}
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="layers.1"):
        load_wav2vec2(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=REPO):
        load_wav2vec2(tmp_path)


def tone(freq, seconds, rate):
    return torch.sin(2 * math.pi * freq * torch.arange(round(seconds * rate)) / rate)


def peak_hz(signal, rate):
    return torch.fft.rfft(signal).abs().argmax().item() * rate / signal.shape[-1]


def test_stereo_48k_becomes_mono_16k_and_keeps_pitch():
    left = tone(440, 1.0, 48000)
    mono = audio_to_mono(torch.stack([left, 0.5 * left]), 48000)
    assert mono.dtype == torch.float32 and mono.shape == (16000,)
    assert peak_hz(mono, 16000) == 440
    middle = mono[1000:-1000]
    assert abs(middle.abs().max().item() - 0.75) < 0.01  # the channels are averaged


def test_integer_pcm_is_scaled_to_full_scale_one():
    wave = tone(440, 0.5, 16000)  # peak about 1 after scaling below
    wave = wave / wave.abs().max()
    as_int16 = (wave * 32767).round().to(torch.int16)
    as_int32 = (wave.double() * (2**31 - 1)).round().to(torch.int32)  # float32 would round up past int32
    as_uint8 = (wave * 127 + 128).round().to(torch.uint8)  # offset binary
    for pcm, step in ((as_int16, 1 / 32768), (as_int32, 1e-6), (as_uint8, 1 / 128)):
        assert (audio_to_mono(pcm, 16000) - wave).abs().max() <= 2 * step, pcm.dtype  # rounding + 2^(b-1)-1 vs 2^(b-1)


def test_audio_batches_rates_and_lengths():
    batch = torch.stack([torch.stack([tone(440, 0.5, 44100)] * 2), torch.stack([tone(1000, 0.5, 44100)] * 2)])
    mono = audio_to_mono(batch, 44100)  # [2, 2, 22050]: the first clip is used
    assert mono.shape == (math.ceil(22050 * 16000 / 44100),)
    assert peak_hz(mono, 16000) == 440
    same = tone(300, 0.25, 16000)
    assert torch.equal(audio_to_mono(same.numpy(), 16000), same)
    assert audio_to_mono(tone(440, 1.0, 8000), 8000.0).shape == (16000,)


def test_bad_audio_is_rejected_with_a_reason():
    with pytest.raises(RAPInputError, match="empty"):
        audio_to_mono(torch.zeros(2, 0), 16000)
    with pytest.raises(RAPInputError, match="empty"):
        audio_to_mono(torch.zeros(0, 2, 100), 16000)
    nan = tone(440, 0.1, 16000)
    nan[7] = float("nan")
    with pytest.raises(RAPInputError, match="NaN"):
        audio_to_mono(nan, 16000)
    with pytest.raises(RAPInputError, match="NaN or infinite"):
        audio_to_mono(torch.full((2, 100), float("inf")), 16000)
    with pytest.raises(RAPInputError, match="sample_rate"):
        audio_to_mono(tone(440, 0.1, 16000), 0)
    with pytest.raises(RAPInputError, match=r"\[samples\]"):
        audio_to_mono(torch.zeros(1, 1, 2, 100), 16000)
