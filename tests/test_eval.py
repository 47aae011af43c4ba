"""Lip-sync and drift metrics on frames drawn here: a skin-coloured square with red lips around a
dark mouth whose height follows a known signal, with noise, head sway and lighting changes."""

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from rap_core.errors import RAPInputError
from rap_core.eval import (
    drift_curve,
    drift_ratio,
    format_table,
    lipsync_score,
    loudness_envelope,
    mouth_opening,
    shuffled_control,
)
from rap_core.eval.motion import TRACKING_REACH_PX, head_offsets, head_region, motion_amplitude
from rap_core.eval.run import spearman
from rap_core.synthetic import layout, make_clip
from rap_core.synthetic import portrait as still_portrait

RATE, FPS, SIZE = 16000, 25, 48
MOUTH_BOX = (10, 38, 8, 40)  # (y0, y1, x0, x1): the mouth under a sway of 2 px
SKIN, LIPS, INSIDE = (0.85, 0.65, 0.55), (0.75, 0.3, 0.3), (0.2, 0.05, 0.05)


def smooth_signal(frames: int, seed: int, width: float = 3.0) -> torch.Tensor:
    """[frames] float64 in 0..1: Gaussian-smoothed noise, about as smooth as speech loudness."""
    noise = torch.randn(frames + 20, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    kernel = torch.exp(-0.5 * (torch.arange(-10, 11, dtype=torch.float64) / width) ** 2)
    signal = F.conv1d(noise[None, None], (kernel / kernel.sum())[None, None])[0, 0]  # [frames]
    return (signal - signal.min()) / (signal.max() - signal.min())


def coverage(cy: float, cx: float, half_width: float, half_height: float) -> torch.Tensor:
    """[SIZE, SIZE] fraction of each pixel inside the ellipse, from 4x4 samples per pixel."""
    if half_height <= 0:
        return torch.zeros(SIZE, SIZE)
    centres = (torch.arange(4 * SIZE) + 0.5) / 4
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    inside = (((x - cx) / half_width) ** 2 + ((y - cy) / half_height) ** 2 <= 1).float()
    return rearrange(inside, "(h a) (w b) -> h w (a b)", a=4, b=4).mean(-1)  # [SIZE, SIZE]


def talking_frames(heights, sway: int = 0, brightness=None, noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    """frames [T, SIZE, SIZE, 3]: the mouth interior is heights[t] px tall and moves by up to
    `sway` px in each direction; the whole frame is scaled by brightness[t]; Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.randint(-sway, sway + 1, (len(heights), 2), generator=generator)
    frames = []
    for height, (dy, dx) in zip(heights.tolist(), shifts.tolist()):
        cy, cx = SIZE / 2 + dy, SIZE / 2 + dx
        lips = coverage(cy, cx, 11, height / 2 + 2.5)[..., None]  # [SIZE, SIZE, 1]
        mouth = coverage(cy, cx, 9, height / 2)[..., None]
        frame = torch.tensor(SKIN) * (1 - lips) + torch.tensor(LIPS) * lips
        frames.append(frame * (1 - mouth) + torch.tensor(INSIDE) * mouth)
    video = torch.stack(frames)  # [T, SIZE, SIZE, 3]
    if brightness is not None:
        video = video * torch.as_tensor(brightness, dtype=torch.float32)[:, None, None, None]
    return (video + noise * torch.randn(video.shape, generator=generator)).clamp(0, 1)


def speech_like(seconds: float, seed: int) -> torch.Tensor:
    """[S] noise at RATE whose loudness rises and falls like syllables (4.5 Hz) with pauses."""
    samples, control_rate = round(seconds * RATE), 100
    level = smooth_signal(int(seconds * control_rate) + 1, seed, width=4.0)
    syllables = 0.5 + 0.5 * torch.sin(2 * math.pi * 4.5 * torch.arange(len(level)) / control_rate + 3 * level)
    amplitude = (level > 0.3).double() * syllables * level  # [control frames], 0 in pauses
    amplitude = F.interpolate(amplitude[None, None], size=samples, mode="linear")[0, 0]  # [S]
    noise = torch.randn(samples, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return (0.3 * amplitude * noise).float()


def correlation(a, b) -> float:
    return float(torch.corrcoef(torch.stack([torch.as_tensor(a).double(), torch.as_tensor(b).double()]))[0, 1])


def test_mouth_opening_follows_the_mouth_under_sway_and_a_lighting_change():
    heights = 8 * smooth_signal(200, seed=1)
    steady = mouth_opening(talking_frames(heights, seed=2), MOUTH_BOX)
    swaying = mouth_opening(
        talking_frames(heights, sway=2, brightness=torch.linspace(1.0, 0.8, 200), seed=3), MOUTH_BOX
    )
    assert correlation(steady, heights) > 0.98
    assert correlation(swaying, heights) > 0.95
    full_open = math.pi * 9 * 4  # interior area (px) of a mouth 8 px tall and 18 px wide
    assert float(swaying.max()) == pytest.approx(full_open, rel=0.15)
    closed = mouth_opening(talking_frames(torch.zeros(20), seed=4), MOUTH_BOX)
    assert float(closed.max()) < 0.1 * full_open


@pytest.mark.parametrize("lag", [1, -2])
def test_lipsync_score_finds_a_known_lag(lag):
    signal = smooth_signal(124, seed=5)
    envelope = signal[2:122]  # [120]
    opening = signal[2 - lag : 122 - lag]  # opening[t] = envelope[t - lag]: the mouth trails by `lag`
    score = lipsync_score(opening, envelope)
    assert score.lag == lag
    assert score.r == pytest.approx(1.0)
    assert set(score.by_lag) == {-2, -1, 0, 1, 2}
    assert max(r for k, r in score.by_lag.items() if k != lag) < score.r


def test_a_mouth_driven_by_the_speech_scores_high_and_the_shuffled_control_low():
    waveform = speech_like(10.0, seed=6)
    envelope = loudness_envelope(waveform, RATE)
    heights = (8 * (envelope + 45) / 35).clamp(0, 8)  # louder -> wider open, shut below -45 dB
    opening = mouth_opening(talking_frames(heights, sway=1, seed=7), MOUTH_BOX)
    score = lipsync_score(opening, envelope)
    assert score.r > 0.9
    assert score.lag == 0
    for seed in range(3):
        assert abs(shuffled_control(opening, envelope, seed=seed)) < 0.2


def test_constant_signals_correlate_with_nothing():
    varying = smooth_signal(50, seed=8)
    assert lipsync_score(torch.full((50,), 3.7), varying).r == 0.0
    assert lipsync_score(varying, torch.full((50,), -60.0)).by_lag == {k: 0.0 for k in range(-2, 3)}
    still = mouth_opening(talking_frames(torch.full((30,), 4.0), noise=0.0), MOUTH_BOX)
    score = lipsync_score(still, varying[:30])
    assert (score.r, score.lag) == (0.0, 0)


def test_lipsync_refuses_short_or_mismatched_clips():
    with pytest.raises(RAPInputError, match="at least 12"):
        lipsync_score(torch.rand(11), torch.rand(11))
    with pytest.raises(RAPInputError, match="same clip"):
        lipsync_score(torch.rand(40), torch.rand(41))
    with pytest.raises(RAPInputError, match="NaN"):
        lipsync_score(torch.full((40,), float("nan")), torch.rand(40))
    with pytest.raises(RAPInputError, match="mouth box"):
        mouth_opening(torch.rand(3, SIZE, SIZE, 3), (30, 10, 8, 40))


@pytest.mark.parametrize("seconds, frames", [(1.0, 25), (1.32, 33), (0.28, 7)])
def test_loudness_envelope_has_one_value_per_video_frame(seconds, frames):
    assert loudness_envelope(torch.rand(round(seconds * RATE)) - 0.5, RATE, FPS).shape == (frames,)


def test_loudness_envelope_is_the_rms_of_each_frame_in_db():
    tone = 0.5 * torch.sin(2 * math.pi * 500 * torch.arange(RATE) / RATE)  # 1 s, 20 full periods per frame
    waveform = torch.cat([tone, torch.zeros(RATE // 2)])
    envelope = loudness_envelope(waveform, RATE, FPS)
    rms_db = 20 * math.log10(0.5 / math.sqrt(2))
    assert envelope[:25].tolist() == pytest.approx([rms_db] * 25, abs=1e-3)
    assert envelope[25:].tolist() == [-60.0] * 13  # silence sits on the floor, not at -inf


def portrait(shift: int = 0, backdrop_shift: float = 0.0) -> torch.Tensor:
    """[32, 32, 3]: a shaded blue-grey backdrop and a skin-coloured face disc (radius 9) moved by
    `shift` px to the right; `backdrop_shift` is added to the backdrop's colour."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    backdrop = torch.stack([0.3 + 0.004 * x, 0.35 + 0.004 * y, torch.full_like(x, 0.5)], -1) + backdrop_shift
    face = (((y - 16) ** 2 + (x - 16 - shift) ** 2) <= 81).float()[..., None]  # [32, 32, 1]
    skin = torch.tensor(SKIN) - 0.002 * (y - 16)[..., None]  # light from above
    return backdrop * (1 - face) + skin * face


def test_drift_curve_sees_colour_drift_but_not_head_sway():
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    distance = ((y - 16) ** 2 + (x - 16) ** 2).sqrt()
    background, face_skin = distance > 13, distance <= 9
    reference = portrait()
    same = drift_curve(reference.expand(5, -1, -1, -1), reference, background, face_skin)
    assert same.background.abs().max() < 1e-6 and same.identity.abs().max() < 1e-6
    swayed = drift_curve(torch.stack([portrait(shift=s) for s in (-2, 2, 0, 2, -2)]), reference, background, face_skin)
    assert float(swayed.background.max()) < 1e-6
    assert float(swayed.identity.max()) < 0.005
    # a head that moves further than a still mask allows: followed, its skin keeps its colour
    far = torch.stack([portrait(shift=s) for s in (-8, 8, 0, 8, -8)])
    offsets = torch.tensor([[s, 0.0] for s in (-8, 8, 0, 8, -8)])
    clear = (y < 5) | (y > 27)  # rows the moving disc never reaches
    assert float(drift_curve(far, reference, clear, face_skin).identity.max()) > 0.02
    assert float(drift_curve(far, reference, clear, face_skin, offsets).identity.max()) < 0.002
    drifting = torch.stack([portrait(backdrop_shift=0.01 * t) for t in range(10)])
    curve = drift_curve(drifting, reference, background, face_skin)
    assert torch.all(curve.background.diff() > 0.005) and torch.all(curve.identity.diff() > 0.002)
    assert float(curve.background[-1]) == pytest.approx(0.09, abs=0.01)


def test_drift_ratio_of_a_minute_of_video():
    frames = 60 * FPS
    generator = torch.Generator().manual_seed(9)
    stable = 0.02 + 0.002 * torch.randn(frames, generator=generator)
    assert drift_ratio(stable) == pytest.approx(1.0, abs=0.05)
    drifting = 0.02 + 0.0005 * torch.arange(frames) / FPS  # +0.03 over the minute
    assert drift_ratio(drifting) > 1.5
    near_perfect = torch.linspace(0.0, 0.003, frames)  # never a full 8-bit level off
    assert drift_ratio(near_perfect) < 1.5
    with pytest.raises(RAPInputError, match="at least 250"):
        drift_ratio(stable[:200])


def test_format_table_lines_up_and_is_markdown():
    rows = [
        {"continuity": "inherit", "lipsync r": 0.71234, "lag": 0, "drift ratio": 1.1},
        {"continuity": "motion_frames", "lipsync r": 0.65, "lag": -1},
    ]
    table = format_table(rows, ["continuity", "lipsync r", "lag", "drift ratio"])
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "continuity"
    assert lines[1] == "|---------------|----------:|----:|------------:|"
    assert lines[2] == "| inherit       |     0.712 |   0 |       1.100 |"
    assert lines[3] == "| motion_frames |     0.650 |  -1 |             |"
    assert len({len(line) for line in lines}) == 1
    small = format_table([{"identity_error": 0.0036214}, {"identity_error": 0.0}], ["identity_error"]).splitlines()
    assert small[2] == "|        0.00362 |" and small[3] == "|          0.000 |"


def test_head_offsets_recover_the_synthetic_sway_in_pixels():
    for seed in (3, 11):
        clip = make_clip(seed, size=64)
        marks, pose = layout(clip.identity, 64), layout(clip.identity, 64, sway=TRACKING_REACH_PX * 2 / 64)
        region = head_region(pose.face_skin, marks.mouth_box)
        offsets = head_offsets(clip.frames, still_portrait(clip.identity, 64), region)
        truth = clip.sway * 32  # normalised units (the image is 2 wide) -> pixels
        assert truth.abs().max() > 1.0 and (offsets - truth).abs().max() < 0.5  # of a sway reaching +-2.5 px
        assert torch.corrcoef(torch.cat([offsets, truth], 1).T)[[0, 1], [2, 3]].min() > 0.9
        assert abs(motion_amplitude(offsets) - motion_amplitude(truth)) < 0.1 * motion_amplitude(truth)
    with pytest.raises(RAPInputError, match="must match the frames"):
        head_offsets(clip.frames[:, :32], still_portrait(clip.identity, 64), region)


def test_spearman_ranks():
    assert spearman([0.0, 0.25, 0.5, 0.75, 1.0], [0.1, 0.2, 0.5, 0.55, 3.0]) == pytest.approx(1.0)
    assert spearman([0.0, 0.25, 0.5, 0.75, 1.0], [3.0, 0.2, 0.5, 0.55, 0.1]) == pytest.approx(-0.6)


def test_spearman_gives_ties_their_mean_rank():
    assert spearman([0.0, 0.5, 1.0], [1.0, 1.0, 2.0]) == pytest.approx(math.sqrt(3) / 2)
