"""Training: static-dynamic windows, the loss, resume, and two-process DDP through torchrun."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from rap_core.config import get_preset
from rap_core.errors import RAPInputError
from rap_core.loading.random_weights import random_audio_encoder, random_dit, random_vae
from rap_core.training.data import ClipSet, encode_clip, motion_statistics, percentiles, save_clips
from rap_core.training.objective import rap_loss, sample_window, window_frames
from rap_core.training.trainer import TrainConfig, train

TINY = get_preset("tiny")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three encoded 2.4 s clips of the tiny preset (random frames and noise audio)."""
    vae, encoder = random_vae(TINY), random_audio_encoder(TINY)
    g = torch.Generator().manual_seed(0)
    clips = []
    for index in range(3):
        frames = torch.rand(60, 64, 64, 3, generator=g)
        face, mouth = torch.zeros(64, 64), torch.zeros(64, 64)
        face[20:52, 16:48] = 1
        mouth[40:48, 24:40] = 1
        motion = torch.tensor([0.1 * index, 0.3 - 0.1 * index])  # expression rises, head motion falls
        clips.append(
            encode_clip(
                TINY, vae, encoder, frames, 0.1 * torch.randn(60 * 640, generator=g), frames[0], face, mouth, motion
            )
        )
    folder = tmp_path_factory.mktemp("clips")
    save_clips(folder, clips)
    return folder


def test_windows_start_static_with_probability_beta_else_inside_the_motion():
    g = torch.Generator().manual_seed(0)
    starts = [sample_window(9, 3, 0.3, g) for _ in range(4000)]
    static = sum(s == 0 for s in starts) / len(starts)
    assert abs(static - 0.3) < 0.03
    assert set(starts) == set(range(7))  # dynamic starts are uniform over 1..6
    assert [sample_window(9, 3, 1.0, g) for _ in range(20)] == [0] * 20
    assert window_frames(0, 3, 8) == (0, 17) and window_frames(2, 3, 8) == (16, 33)
    with pytest.raises(RAPInputError, match="cannot hold"):
        sample_window(2, 3, 0.5, g)


def test_loss_parts_weigh_the_face_and_the_motion():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 4, 3, 4, 4, generator=g)
    mask = torch.zeros(1, 4, 4)
    mask[:, :2] = 1
    face_error = target.clone()
    face_error[..., :2, :] += 1.0  # an error only inside the face
    parts = rap_loss(face_error, target, mask)
    assert torch.isclose(parts.face, torch.tensor(1.0)) and torch.isclose(parts.flow, torch.tensor(0.5))
    assert torch.isclose(parts.motion, torch.tensor(0.0))  # the same error in every frame: no motion error
    assert torch.isclose(parts.total, parts.flow + 0.5 * parts.face)
    flicker = target.clone()
    flicker[:, :, 1] += 1.0  # only frame 1 is off: the frame differences are
    assert rap_loss(flicker, target, mask).motion > 0
    mouth = torch.zeros(1, 4, 4)
    mouth[:, 1, 1:3] = 1  # inside the face: its error is 1 everywhere
    lipped = rap_loss(face_error, target, mask, mouth_mask=mouth, lip_weight=2.0)
    assert torch.isclose(lipped.lip, torch.tensor(1.0)) and torch.isclose(lipped.total, parts.total + 2.0)
    mouth[:] = 0
    mouth[:, 3, 3] = 1  # outside the face: no error there
    assert rap_loss(face_error, target, mask, mouth_mask=mouth, lip_weight=2.0).lip == 0


def test_intensity_labels_are_percentiles_over_the_data_set(data_dir):
    clips = ClipSet(data_dir)  # expression statistics 0, 0.1, 0.2; head motion 0.3, 0.2, 0.1
    assert torch.allclose(clips.intensity, torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]))
    batch = clips.batch(torch.Generator().manual_seed(0), 6, 3, 0.5, TINY.audio.window, TINY.vae.temporal_stride)
    expected = {tuple(row.tolist()) for row in clips.intensity}
    assert {tuple(row.tolist()) for row in batch.intensity} <= expected
    assert batch.mouth_mask.shape == (6, 2, 2) and (batch.mouth_mask.sum((1, 2)) > 0).all()  # 64 px -> 2x2 latents
    assert torch.allclose(
        percentiles(torch.tensor([[3.0], [1.0], [3.0], [2.0]])), torch.tensor([[5 / 6], [0.0], [5 / 6], [1 / 3]])
    )


def test_the_expression_statistic_is_the_mouths_response_to_loudness_not_the_speechs_spread():
    time = torch.linspace(0, 6, 150)
    flat, lively = 0.4 + 0.1 * torch.sin(time), 0.4 + 0.3 * torch.sin(time)  # [T] two utterances' envelopes
    head = torch.stack([0.01 * torch.cos(time), 0.02 * torch.sin(time)], dim=1)  # [T, 2]
    for speech in (flat, lively):
        assert torch.allclose(motion_statistics(0.8 * speech, speech, head)[0], torch.tensor(0.8), atol=1e-5)
    wide = motion_statistics(1.2 * flat, flat, head)
    assert torch.allclose(wide, torch.stack([torch.tensor(1.2), head.std(0).norm()]), atol=1e-5)
    assert motion_statistics(torch.full((150,), 0.3), flat, head)[0].abs() < 1e-6  # a mouth deaf to the speech


def test_clips_of_an_older_format_say_to_make_the_data_again(data_dir, tmp_path):
    stored = load_file(next(data_dir.glob("clip_*.safetensors")))
    del stored["motion"]
    save_file(stored, tmp_path / "clip_000000.safetensors")
    with pytest.raises(RAPInputError, match="make-data"):
        ClipSet(tmp_path)


def test_resume_continues_exactly_like_an_uninterrupted_run(data_dir, tmp_path):
    short = dict(batch_size=2, log_every=1, checkpoint_every=2)
    straight = train(TINY, ClipSet(data_dir), tmp_path / "a", TrainConfig(steps=4, **short), progress=False)
    train(TINY, ClipSet(data_dir), tmp_path / "b", TrainConfig(steps=2, **short), progress=False)
    resumed = train(TINY, ClipSet(data_dir), tmp_path / "b", TrainConfig(steps=4, **short), progress=False)
    assert resumed["loss"] == straight["loss"] and resumed["replica_digests"] == straight["replica_digests"]


def test_a_resumed_run_trains_at_its_own_learning_rate(data_dir, tmp_path):
    short = dict(batch_size=2, log_every=1, checkpoint_every=2)
    train(TINY, ClipSet(data_dir), tmp_path, TrainConfig(steps=2, lr=1e-3, **short), progress=False)
    train(TINY, ClipSet(data_dir), tmp_path, TrainConfig(steps=4, lr=1e-5, **short), progress=False)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert [group["lr"] for group in state["optimizer"]["param_groups"]] == [1e-5]


def test_two_process_ddp_training_keeps_replicas_identical(data_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "rap_core",
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--log-every",
        "1",
        "--checkpoint-every",
        "2",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in log)
    first, second = log[-1]["replica_digests"]
    assert first == second  # both ranks hold bit-identical weights after two synchronised steps
    assert (tmp_path / "dit.safetensors").is_file()


def test_make_data_train_and_eval_from_the_command_line(tmp_path):
    """The documented path on the tiny preset: synthetic clips -> a training run -> the eval table."""

    def run(*args):
        return subprocess.run([sys.executable, "-m", "rap_core", *args], capture_output=True, text=True, timeout=300)

    made = run("make-data", "--preset", "tiny", "--clips", "2", "--out", str(tmp_path / "data"))
    assert made.returncode == 0, made.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "clip_000000.safetensors",
        "clip_000001.safetensors",
    ]
    trained = run(
        "train",
        "--preset",
        "tiny",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--log-every",
        "1",
    )
    assert trained.returncode == 0 and "step 2: loss" in trained.stdout, trained.stderr[-2000:]
    table = run("eval", "--preset", "tiny", "--clips", "1", "--seconds", "3", "--continuity", "inherit", "none")
    assert table.returncode == 0, table.stderr[-2000:]
    header, _, *rows = table.stdout.strip().splitlines()[-4:]
    assert "| continuity" in header and "shuffled_r" in header
    assert [row.split("|")[1].strip() for row in rows] == ["inherit", "none"]


def test_a_fresh_run_can_start_from_given_weights(data_dir, tmp_path):
    start = random_dit(TINY)
    save_file(start.state_dict(), tmp_path / "start.safetensors")
    train_config = TrainConfig(steps=1, batch_size=2, lr=0.0, init=str(tmp_path / "start.safetensors"))
    train(TINY, ClipSet(data_dir), tmp_path / "run", train_config, progress=False)
    tuned = load_file(tmp_path / "run" / "dit.safetensors")
    assert tuned.keys() == start.state_dict().keys()
    assert all(torch.equal(tuned[name], value) for name, value in start.state_dict().items())  # lr 0: unchanged


def test_training_reaches_the_intensity_and_identity_branches(data_dir, tmp_path):
    config = TINY.replace(dit=dataclasses.replace(TINY.dit, intensity_control=True, identity_attention=True))
    train(
        config, ClipSet(data_dir), tmp_path, TrainConfig(steps=2, batch_size=2, lr=1e-3, ema_decay=0.0), progress=False
    )
    weights = load_file(tmp_path / "dit.safetensors")  # EMA with decay 0: the trained weights
    assert weights["intensity.mlp.2.weight"].abs().max() > 0  # both branches started silent: training moved them
    assert all(weights[f"identity.attn.{i}.o.weight"].abs().max() > 0 for i in range(TINY.dit.num_layers))  # faces fed
