"""rap_core.live: a talk fed as audio arrives gives the offline stream's frames, keeps pace with the
clock through silence, starts cleanly after an interrupt, and holds bounded audio however long it runs."""

import math
import threading

import pytest
import torch

from rap_core import RAPInputError
from rap_core.eval.lipsync import lipsync_score, loudness_envelope, mouth_opening
from rap_core.eval.run import HELDOUT_IDENTITIES, heldout_speech
from rap_core.live import LiveAudio, LiveTalk, LiveVideo, SegmentDone, _Resampler
from rap_core.media.normalise import audio_to_mono
from rap_core.pipeline import RAPPipeline
from rap_core.synthetic import layout, sample_identity
from rap_core.synthetic import portrait as synthetic_portrait

SR = 16000
FPS = 25
STEP = 16  # frames each tiny chunk adds: 17-frame clips overlapping by 1


@pytest.fixture(scope="module")
def pipe():
    return RAPPipeline.from_preset("tiny")


def speech_like(seconds: float, sample_rate: int = SR, seed: int = 0) -> torch.Tensor:
    """A gliding tone with a syllable-rate envelope plus a little noise: [S] float32."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    tone = torch.sin(2 * math.pi * (140 + 60 * torch.sin(2 * math.pi * 0.7 * t)) * t)
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t).clamp(min=0)
    return 0.3 * tone * envelope + 0.01 * torch.randn(t.shape, generator=g)


def portrait() -> torch.Tensor:
    return torch.rand(96, 80, 3, generator=torch.Generator().manual_seed(0))  # [H, W, 3]


def live_talk(pipe, sample_rate: int = SR, **options) -> LiveTalk:
    return LiveTalk(pipe, portrait(), sample_rate, seed=7, framing="centre", **options)


def offline(pipe, audio: torch.Tensor, sample_rate: int = SR, **options) -> torch.Tensor:
    """The offline stream's frames of `audio`, on the same portrait and seed -> [N, H, W, 3]."""
    return torch.cat(
        list(
            pipe.stream(
                portrait(), audio, sample_rate, seed=7, framing="centre", audio_context="reference-stream", **options
            )
        )
    )


def push_in_pieces(live: LiveTalk, audio, seed: int, largest: int, out: list) -> None:
    """Push `audio` in random pieces of 1..largest samples, polling after each."""
    g, at = torch.Generator().manual_seed(seed), 0
    while at < len(audio):
        size = int(torch.randint(1, largest + 1, (1,), generator=g))
        live.push(audio[at : at + size])
        at += size
        drain(live, out)


def drain(live: LiveTalk, out: list, now: float | None = None) -> list:
    while items := live.poll(now):
        out += items
    return out


def video(items) -> torch.Tensor:
    return torch.cat([item.frames for item in items if isinstance(item, LiveVideo)])


def sound(items) -> torch.Tensor:
    return torch.cat([item.samples for item in items if isinstance(item, LiveAudio)])


def ends(items) -> list[SegmentDone]:
    return [item for item in items if isinstance(item, SegmentDone)]


def check_timeline(items, sample_rate: int = SR) -> None:
    """Frames and audio come contiguous from frame 0, each audio piece with its frames (same pts)."""
    frames = [item for item in items if isinstance(item, LiveVideo)]
    pieces = [item for item in items if isinstance(item, LiveAudio)]
    assert [f.index for f in frames] == [k * STEP for k in range(len(frames))]
    for f, a in zip(frames, pieces, strict=True):
        assert a.pts == f.pts == f.index / FPS
        assert a.samples.numel() == f.frames.shape[0] * sample_rate // FPS


def test_utterance_pushed_in_pieces_gives_the_offline_streams_frames(pipe):
    audio = (speech_like(2.3) * 32767).to(torch.int16)  # PCM16, as a client sends it
    live, items = live_talk(pipe), []
    push_in_pieces(live, audio, seed=1, largest=3000, out=items)
    assert live.queued_seconds < 2 * STEP / FPS  # chunks went out while audio was still coming
    live.end()
    drain(live, items)
    reference = offline(pipe, audio)
    assert reference.shape[0] == math.ceil(2.3 * FPS) == 58
    assert ends(items) == [SegmentDone(first=0, frames=58)]
    assert torch.equal(video(items)[:58], reference)
    said = sound(items)
    assert torch.equal(said[: audio.numel()], audio.float() / 32768)  # the input audio, aligned to the frames
    assert not said[audio.numel() :].any()  # then the silence that completes the last chunk
    check_timeline(items)


def test_audio_at_48_khz_gives_the_offline_frames_up_to_float_rounding(pipe):
    audio = speech_like(1.1, 48000, seed=2)
    live, items = live_talk(pipe, 48000), []
    push_in_pieces(live, audio, seed=2, largest=9000, out=items)
    live.end()
    drain(live, items)
    reference = offline(pipe, audio, 48000)
    assert ends(items) == [SegmentDone(first=0, frames=28)]
    torch.testing.assert_close(video(items)[:28], reference, rtol=0, atol=1e-4)
    assert torch.equal(sound(items)[: audio.numel()], audio)
    check_timeline(items, 48000)


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000])
def test_resampling_in_pieces_matches_resampling_the_whole_utterance(rate):
    audio = speech_like(1.7, rate, seed=3)
    whole = audio_to_mono(audio, rate, SR)
    resampler, pieces, g, at = _Resampler(rate, SR), [], torch.Generator().manual_seed(rate), 0
    while at < audio.numel():
        size = int(torch.randint(1, 4000, (1,), generator=g))
        pieces.append(resampler.feed(audio[at : at + size]))
        at += size
    pieces.append(resampler.flush())
    joined = torch.cat(pieces)
    assert joined.numel() == whole.numel()  # ceil(S * 16000 / rate): the frame rule holds
    torch.testing.assert_close(joined, whole, rtol=0, atol=1e-6)  # the same filter, summed in another order
    assert resampler.held.numel() < rate // 40  # it holds only the filter's reach: under 25 ms


def test_each_utterance_yields_ceil_seconds_times_fps_frames_from_a_chunk_boundary(pipe):
    live, items = live_talk(pipe), []
    for samples in (1, 640, 641, 16001):
        before = len(items)
        live.push(speech_like(1.1)[:samples])
        drain(live, items)
        assert (len(items) > before) == (samples >= STEP * SR // FPS)  # a chunk goes once its audio is all in
        live.end()
        drain(live, items)
    assert ends(items) == [SegmentDone(0, 1), SegmentDone(16, 1), SegmentDone(32, 2), SegmentDone(48, 26)]
    assert video(items).shape[0] == 48 + 2 * STEP  # each last chunk completed with silence


def test_silence_between_utterances_keeps_pace_with_the_clock_and_carries_the_talk_on(pipe):
    first, second = speech_like(0.9, seed=4), speech_like(0.5, seed=5)
    live, items = live_talk(pipe), []
    live.push(first)
    live.end()
    drain(live, items)
    assert ends(items) == [SegmentDone(first=0, frames=23)]
    assert video(items).shape[0] == STEP * 2
    assert drain(live, []) == []  # without the clock nothing is rendered between utterances
    now = 0.0
    while now < 3.0:  # 3 s of the clock with no audio, polled every 40 ms
        drain(live, items, now)
        shown = video(items).shape[0] / FPS
        assert now < shown <= max(now, 2 * STEP / FPS) + STEP / FPS  # frames cover the clock, one chunk ahead at most
        now += 0.04
    idle_until = video(items).shape[0]
    assert not sound(items)[23 * SR // FPS :].any()  # the idle frames' audio is silence
    live.push(second)
    live.end()
    drain(live, items, now)
    assert ends(items)[1] == SegmentDone(first=idle_until, frames=13)  # at the next chunk boundary
    check_timeline(items)
    # the whole session, silence included, is one talk: the offline stream of the audio it handed out
    assert torch.equal(video(items), offline(pipe, sound(items)))


def test_clear_mid_utterance_drops_the_rest_and_the_next_utterance_starts_cleanly(pipe):
    interrupted, answer = speech_like(3.0, seed=6), speech_like(0.6, seed=8)
    live, items = live_talk(pipe), []
    live.push(interrupted[: 2 * SR])
    assert len(drain(live, items)) == 3 * 2  # chunks of frames [0, 48) were ready: 1.92 s of audio
    assert live.queued_seconds == pytest.approx(2.0 - 48 / FPS)
    live.clear()
    assert live.queued_seconds == 0 and live.poll() == []
    live.push(answer)
    live.end()
    drain(live, items)
    assert ends(items) == [SegmentDone(first=48, frames=15)]
    said = sound(items)
    assert torch.equal(said[: 48 * SR // FPS], interrupted[: 48 * SR // FPS])
    assert torch.equal(said[48 * SR // FPS : 48 * SR // FPS + answer.numel()], answer)  # nothing of the rest
    check_timeline(items)
    assert torch.equal(video(items), offline(pipe, said))


def test_pushes_from_another_thread_while_polling(pipe):
    audio = speech_like(1.2, seed=9)
    live, items, finished = live_talk(pipe), [], threading.Event()

    def speak():
        for at in range(0, audio.numel(), 320):  # 20 ms pieces
            live.push(audio[at : at + 320])
        live.end()
        finished.set()

    speaker = threading.Thread(target=speak)
    speaker.start()
    while not ends(items):
        items += live.poll()
    speaker.join()
    assert finished.is_set() and ends(items) == [SegmentDone(first=0, frames=30)]
    assert torch.equal(video(items)[:30], offline(pipe, audio))


def test_held_audio_stays_bounded_however_long_the_talk_runs(pipe):
    rate, piece = 48000, 960  # 20 ms pushes at 48 kHz, resampled as they come
    live, peak, held = live_talk(pipe, rate, steps=1), 0, []
    # the 8 s the next chunk hears, one chunk of input audio not yet handed out, a piece of each, the filter's reach
    bound = 8 * SR + STEP * rate // FPS + 2 * piece + rate // 40
    for second in range(120):  # 2 minutes; the bound is reached after the 8 s a chunk hears
        audio = speech_like(1.0, rate, seed=second)
        for at in range(0, rate, piece):
            live.push(audio[at : at + piece])
            live.poll()
            peak = max(peak, live.held_samples)
        held.append(live.held_samples)
    assert live.frames_taken >= 119 * FPS - STEP  # it kept up: all but the chunk still filling
    assert peak <= bound
    assert max(held[20:]) - min(held[20:]) <= STEP * (SR + rate) // FPS + piece  # flat once 8 s are heard


def test_stop_ends_the_session(pipe):
    live, items = live_talk(pipe), []
    live.push(speech_like(1.0))
    drain(live, items)
    live.stop()
    assert live.poll(now=10.0) == [] and live.held_samples == 0
    with pytest.raises(RAPInputError, match="stopped; start a new LiveTalk"):
        live.push(speech_like(0.1))


def test_bad_live_input_is_refused_with_what_to_do(pipe):
    with pytest.raises(RAPInputError, match="reference-stream.*Leave audio_context unset"):
        live_talk(pipe, audio_context="lookahead")
    with pytest.raises(RAPInputError, match="multiple of 25 Hz"):
        live_talk(pipe, 16010)
    with pytest.raises(RAPInputError, match="lower chunk_latents"):
        live_talk(pipe, chunk_latents=30)  # 233 frames: longer than the 8 s a chunk hears
    live = live_talk(pipe)
    with pytest.raises(RAPInputError, match=r"shaped \[samples\].*Average the channels"):
        live.push(torch.zeros(2, 320))
    with pytest.raises(RAPInputError, match="NaN"):
        live.push(torch.full((320,), float("nan")))
    live.push(torch.zeros(0))  # an empty push is nothing
    assert live.queued_seconds == 0


def test_demo_live_talk_lip_syncs_and_rests_with_a_closed_mouth_in_the_silence_after():
    pipe = RAPPipeline.from_preset("demo")
    identity = sample_identity(HELDOUT_IDENTITIES + 7)
    still, marks = synthetic_portrait(identity, 128), layout(identity, 128)
    speech = heldout_speech(7, 4.0)
    live = LiveTalk(pipe, still, SR, seed=7, framing="centre", face_box=marks.face_box)
    assert live.sampling.chunk_latents == pipe.config.sampling.live_chunk_latents == 5  # the preset's live chunk
    items = []
    for at in range(0, speech.numel(), 320):  # 20 ms pieces, as a microphone sends them
        live.push(speech[at : at + 320])
        items += live.poll()
    live.end()
    for tick in range(50):  # then 2 s of the clock without audio
        drain(live, items, now=4.0 + 0.04 * tick)
    assert ends(items) == [SegmentDone(first=0, frames=100)]
    frames = video(items)
    assert frames.shape[0] > 6.0 * FPS  # the stream went on through the silence
    opening = mouth_opening(frames, marks.mouth_box)  # [T]
    sync = lipsync_score(opening[:100], loudness_envelope(speech, SR, FPS))
    assert sync.r >= 0.6 and abs(sync.lag) <= 1  # 0.83 at lag 1 measured
    speaking = opening[:100].quantile(0.9)
    assert opening[108:].max() <= 0.2 * speaking  # closed within a third of a second of the speech's end
