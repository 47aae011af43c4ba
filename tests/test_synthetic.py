"""The synthetic talking-head world: deterministic faces whose mouths follow espeak-ng speech."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rap_core.errors import RAPInputError
from rap_core.eval.lipsync import loudness_envelope
from rap_core.eval.motion import TRACKING_REACH_PX, follow
from rap_core.synthetic.clip import HEAD_ENERGY, NOD_SHARE, blink_track, make_clip, portrait, sway_track
from rap_core.synthetic.identity import sample_identity
from rap_core.synthetic.mouth import mouth_track
from rap_core.synthetic.render import SWAY_LIMIT, layout, render
from rap_core.synthetic.speech import SAMPLE_RATE, Utterance, sample_utterance, synthesize, texts, voices
from rap_core.timing import video_frame_count

FPS = 25
FRAME = SAMPLE_RATE // FPS  # 640 samples per video frame
FUNCTION_WORDS = {"a", "the", "in", "at", "on", "my", "her", "near", "under", "before", "after", "every", "through"}


def tone(frames: int, start: int, stop: int, hertz: float, amplitude: float = 0.3) -> torch.Tensor:
    """[frames * 640] silence with a sine tone over video frames [start, stop)."""
    audio = torch.zeros(frames * FRAME)
    t = torch.arange((stop - start) * FRAME) / SAMPLE_RATE
    audio[start * FRAME : stop * FRAME] = amplitude * torch.sin(2 * math.pi * hertz * t)
    return audio


@pytest.fixture(scope="module")
def clip():
    return make_clip(3, size=64)


def test_same_seed_gives_the_same_clip_and_seeds_give_different_faces(clip):
    again = make_clip(3, size=64)
    assert torch.equal(clip.frames, again.frames) and torch.equal(clip.audio, again.audio)
    assert clip.utterance == again.utterance and clip.identity == again.identity
    identities = [sample_identity(seed) for seed in range(40)]
    assert len(set(identities)) == 40
    assert len({i.hair_style for i in identities}) >= 5 and len({i.skin for i in identities}) == 40
    assert not torch.equal(portrait(identities[0], 64), portrait(identities[1], 64))


def test_video_frames_follow_the_frame_rule(clip):
    samples = clip.audio.shape[0]
    assert clip.frames.shape == (video_frame_count(samples, SAMPLE_RATE, FPS), 64, 64, 3)
    assert clip.frames.shape[0] == math.ceil(samples * FPS / SAMPLE_RATE)
    assert clip.openness.shape == clip.blink.shape == clip.width.shape == (clip.frames.shape[0],)
    assert mouth_track(torch.ones(FRAME), SAMPLE_RATE).openness.shape == (1,)
    assert mouth_track(torch.ones(FRAME + 1), SAMPLE_RATE).openness.shape == (2,)
    assert mouth_track(torch.ones(44100), 44100, fps=30).openness.shape == (30,)


def test_the_mouth_opens_exactly_while_a_tone_sounds():
    track = mouth_track(tone(25, 10, 15, 220.0), SAMPLE_RATE)
    opened = (track.openness > 0.5).nonzero().flatten().tolist()
    assert opened == [10, 11, 12, 13, 14]
    assert (track.openness[:9] == 0).all() and (track.openness[16:] == 0).all()
    silent = mouth_track(torch.zeros(2 * SAMPLE_RATE), SAMPLE_RATE)
    assert (silent.openness == 0).all()


def test_a_low_tone_rounds_the_mouth_and_a_high_tone_widens_it():
    low = mouth_track(tone(25, 5, 20, 200.0), SAMPLE_RATE).width[8:17]
    high = mouth_track(tone(25, 5, 20, 4000.0), SAMPLE_RATE).width[8:17]
    assert low.max() < 0.2 and high.min() > 0.8


def test_mouth_opening_follows_the_loudness_of_real_speech():
    audio = synthesize("The farmer found a wooden chair before lunch.", "en-us", 160, 50)
    track = mouth_track(audio, SAMPLE_RATE)
    envelope = 10 ** (loudness_envelope(audio, SAMPLE_RATE) / 20)  # [T] linear RMS
    r = torch.corrcoef(torch.stack([track.openness, envelope]))[0, 1]
    assert r > 0.85
    assert track.openness.max() > 0.8 and track.openness[-3:].max() == 0  # speaks, then falls silent


def test_background_and_skin_stay_still_while_the_head_sways_and_the_mouth_talks(clip):
    plan = layout(clip.identity, 64)
    assert plan.background.sum() > 1000
    background = clip.frames[:, plan.background]  # [T, pixels, 3]
    assert torch.equal(background, background[:1].expand_as(background))
    assert (clip.sway.amax(0) - clip.sway.amin(0) > 0.25 * SWAY_LIMIT).all()  # the head really moved
    # the still's skin, within a tracker's reach, stays skin wherever the head goes when it follows the head
    pose = layout(clip.identity, 64, sway=TRACKING_REACH_PX * 2 / 64)
    moved = follow(pose.face_skin, clip.sway * 32)  # [T, 64, 64]; the sway in pixels
    assert pose.face_skin.sum() > 30 and (moved.sum((1, 2)) > 0.9 * pose.face_skin.sum()).all()
    skin = clip.frames[moved]  # [pixels of all frames, 3]
    assert (skin - torch.tensor(clip.identity.skin)).abs().max() < 1e-6
    y0, y1, x0, x1 = plan.mouth_box
    mouth = clip.frames[:, y0:y1, x0:x1]
    closed, opened = clip.openness.argmin(), clip.openness.argmax()
    assert (mouth[opened] - mouth[closed]).abs().amax(-1).mean() > 0.1
    dark = mouth.mean((1, 2, 3))  # the open mouth shows its dark interior
    assert torch.corrcoef(torch.stack([-dark, clip.openness]))[0, 1] > 0.8


def test_the_mouth_box_holds_every_mouth_and_the_portrait_matches_the_clip(clip):
    identity, plan = clip.identity, layout(clip.identity, 64)
    count = 8
    sway = torch.tensor([[sx, sy] for sx in (-SWAY_LIMIT, SWAY_LIMIT) for sy in (-SWAY_LIMIT, SWAY_LIMIT)] * 2)
    blink, width = torch.zeros(count), torch.linspace(0, 1, count)
    shut = render(identity, torch.zeros(count), width, blink, sway, 64)
    wide = render(identity, torch.ones(count), width, blink, sway, 64)
    changed = (wide - shut).abs().amax(-1).amax(0) > 0  # [64, 64]
    y0, y1, x0, x1 = plan.mouth_box
    inside = torch.zeros_like(changed)
    inside[y0:y1, x0:x1] = True
    assert changed.any() and not (changed & ~inside).any()
    still = portrait(identity, 64)
    assert torch.equal(still[plan.background], clip.frames[0][plan.background])


def test_faces_render_at_every_size():
    identity = sample_identity(11)
    for size in (128, 512):
        frames = render(
            identity, torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5]), torch.zeros(2), torch.zeros(2, 2), size
        )
        assert frames.shape == (2, size, size, 3) and frames.dtype == torch.float32
        assert 0 <= frames.min() and frames.max() <= 1
        y0, y1, x0, x1 = layout(identity, size).mouth_box
        assert (frames[1, y0:y1, x0:x1] - frames[0, y0:y1, x0:x1]).abs().amax(-1).mean() > 0.05
        assert (y1 - y0) / size < 0.3 and (x1 - x0) / size < 0.3


def test_blinks_and_the_sideways_sway_come_from_the_seed_not_the_audio():
    other = Utterance("Anna sold a heavy box.", "en-us", 200, 40)
    first, second = make_clip(5, size=32), make_clip(5, size=32, utterance=other)
    frames = min(first.blink.shape[0], second.blink.shape[0])
    assert torch.equal(first.blink[:frames], second.blink[:frames])
    assert torch.equal(first.sway[:frames, 0], second.sway[:frames, 0])
    assert not torch.equal(first.sway[:frames, 1], second.sway[:frames, 1])  # the nod follows the speech
    assert not torch.equal(first.openness[:frames], second.openness[:frames])


def test_blinks_come_every_two_to_six_seconds_and_last_three_or_four_frames():
    track = blink_track(random.Random(0), 60 * FPS, FPS)
    closed = (track == 1).int()
    starts = ((track > 0).int().diff() == 1).nonzero().flatten() + 1
    gaps = starts.diff().float() / FPS
    assert len(starts) >= 9 and gaps.min() >= 2.0 and gaps.max() <= 6.0
    lengths = [(track[s : s + 5] > 0).sum().item() for s in starts.tolist()]
    assert set(lengths) <= {3, 4} and closed.sum() >= len(starts)


def test_sway_is_slow_and_small():
    audio = synthesize("The farmer found a wooden chair before lunch.", "en-us", 160, 50)
    openness = mouth_track(audio, SAMPLE_RATE).openness.repeat(10)  # [T] about 30 s of talking
    for energy in HEAD_ENERGY:
        sway = sway_track(random.Random(1), openness, energy)
        assert sway.abs().max() <= SWAY_LIMIT
        step = sway.diff(dim=0).abs()
        assert step.mean() < 0.05 * SWAY_LIMIT and step.max() < 0.25 * SWAY_LIMIT  # drifts, never jumps
    assert sway[:, 0].std() > 0.3 * (1 - NOD_SHARE) * SWAY_LIMIT and sway[:, 1].std() > 0.1 * SWAY_LIMIT  # walk, nod


def test_the_head_nods_with_the_loudness_as_deep_as_its_energy():
    audio = synthesize("Anna sold a heavy box near the river.", "en-us", 170, 45)
    openness = mouth_track(audio, SAMPLE_RATE).openness
    restless, calm = HEAD_ENERGY[1], HEAD_ENERGY[0]
    talking, silent = (sway_track(random.Random(4), o, restless) for o in (openness, torch.zeros_like(openness)))
    assert torch.equal(talking[:, 0], silent[:, 0])  # the walk comes from the seed alone
    nod = talking[:, 1] - silent[:, 1]  # [T] down is positive
    deepest = NOD_SHARE * SWAY_LIMIT * float(openness.max())
    assert nod.min() >= 0 and 0.5 * deepest < nod.max() <= deepest + 1e-7
    assert torch.corrcoef(torch.stack([nod, openness]))[0, 1] > 0.8
    small = sway_track(random.Random(4), openness, calm)[:, 1] - sway_track(random.Random(4), 0 * openness, calm)[:, 1]
    assert float(small.max()) == pytest.approx(float(nod.max()) * calm / restless, rel=1e-4)


def test_train_and_heldout_speech_pools_share_no_voice_or_sentence():
    train_voices, held_voices = set(voices("train")), set(voices("heldout"))
    assert not train_voices & held_voices
    parts = {split: {p for v in voices(split) for p in v.split("+")} for split in ("train", "heldout")}
    assert not parts["train"] & parts["heldout"]  # no base voice or variant in common
    train_texts, held_texts = set(texts("train")), set(texts("heldout"))
    assert len(train_texts) >= 36 and len(held_texts) >= 36 and not train_texts & held_texts

    def words(sentences):
        return {w.strip(".").lower() for s in sentences for w in s.split()} - FUNCTION_WORDS

    assert not words(train_texts) & words(held_texts)
    for seed in range(30):
        held = sample_utterance(seed, "heldout")
        assert held.voice in held_voices and held.text in held_texts
        assert 120 <= held.rate <= 200 and 30 <= held.pitch <= 70
    assert len({sample_utterance(seed, "train") for seed in range(30)}) == 30


def test_espeak_speech_is_audible_and_about_as_long_as_its_words():
    text = "Oscar carried seven apples to the market every morning."
    slow, fast = synthesize(text, "en-us+f2", 120, 40), synthesize(text, "en-us+f2", 200, 40)
    for audio, rate in ((slow, 120), (fast, 200)):
        assert audio.dtype == torch.float32 and audio.ndim == 1
        seconds = audio.shape[0] / SAMPLE_RATE
        expected = len(text.split()) * 60 / rate
        assert 0.6 * expected < seconds < 1.5 * expected
        assert (loudness_envelope(audio, SAMPLE_RATE) > -30).float().mean() > 0.5
    assert slow.shape[0] > 1.3 * fast.shape[0]


def test_unusable_speech_and_controls_raise_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(RAPInputError, match="voice 'xx-nonexistent'"):
        synthesize("Hello.", "xx-nonexistent", 160, 50)
    with pytest.raises(RAPInputError, match="no text"):
        synthesize("  ", "en-us", 160, 50)
    with pytest.raises(RAPInputError, match="split"):
        sample_utterance(0, "test")
    with pytest.raises(RAPInputError, match="sway"):
        render(sample_identity(0), torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.full((1, 2), 0.2), 64)
    with pytest.raises(RAPInputError, match=r"\[T\]"):
        render(sample_identity(0), torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2, 2), 64)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RAPInputError, match="install Debian's espeak-ng|Install Debian's espeak-ng"):
        synthesize("Hello.", "en-us", 160, 50)
