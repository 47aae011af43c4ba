"""`python -m rap_core eval`: a preset animates unseen synthetic faces saying held-out speech
(voices and texts never used in training); lip sync, mouth and head motion and drift are measured
on what it makes, and `intensity_sweep` does so across the levels of a motion-intensity control."""

from __future__ import annotations

import torch

from ..pipeline import RAPPipeline
from ..synthetic import SAMPLE_RATE, layout, portrait, sample_identity, sample_utterance, synthesize
from ..training.data import percentiles
from .drift import drift_curve, drift_ratio
from .lipsync import lipsync_score, loudness_envelope, mouth_opening, shuffled_control
from .motion import TRACKING_REACH_PX, head_offsets, head_region, motion_amplitude

HELDOUT_IDENTITIES = 1_000_000  # identity seeds from here on are never used for training data
PAUSE_S = 0.3


def heldout_speech(seed: int, seconds: float) -> torch.Tensor:
    """Held-out utterances (seed, seed + 1, ...) separated by short pauses, cut to `seconds`:
    [S] float32 at 16 kHz."""
    pieces, total, index = [], 0, seed
    target = int(seconds * SAMPLE_RATE)
    while total < target:
        utterance = sample_utterance(index, "heldout")
        speech = synthesize(utterance.text, utterance.voice, utterance.rate, utterance.pitch)
        pieces += [speech, speech.new_zeros(int(PAUSE_S * SAMPLE_RATE))]
        total += pieces[-2].numel() + pieces[-1].numel()
        index += 1
    return torch.cat(pieces)[:target]


def evaluate(pipe: RAPPipeline, clips: int, seconds: float, seed: int = 0, **options) -> dict:
    """Mean lip-sync r, best lag, shuffled-audio r, the spread of the mouth opening (std, pixels of
    interior) and of the head position (motion_amplitude, pixels) and, for talks of at least 10 s,
    the drift ratio and the mean identity-colour error (eval.drift) over `clips` held-out talks of
    `seconds` each; `options` are sampling options."""
    size, fps = pipe.config.height, pipe.config.fps
    rows = []
    for index in range(clips):
        identity = sample_identity(HELDOUT_IDENTITIES + seed + index)
        still, marks = portrait(identity, size), layout(identity, size)
        pose = layout(identity, size, sway=TRACKING_REACH_PX * 2 / size)  # the still's masks, to follow the head
        audio = heldout_speech(seed * 1000 + index * 100, seconds)
        frames = pipe.generate(
            still, audio, SAMPLE_RATE, seed=seed + index, face_box=marks.face_box, framing="centre", **options
        )  # the still is framed as the training clips are
        opening, envelope = mouth_opening(frames, marks.mouth_box), loudness_envelope(audio, SAMPLE_RATE, fps)
        sync = lipsync_score(opening, envelope)
        offsets = head_offsets(frames, still, head_region(pose.face_skin, marks.mouth_box))  # [T, 2]
        row = {
            "r": sync.r,
            "lag": sync.lag,
            "shuffled_r": shuffled_control(opening, envelope, seed=index),
            "mouth_std": float(opening.std()),
            "head_amplitude": motion_amplitude(offsets),
        }
        if frames.shape[0] >= 2 * 5 * fps:
            curve = drift_curve(frames, still, marks.background, pose.face_skin, offsets)
            row["drift_ratio"] = drift_ratio(curve.background, fps)
            row["identity_error"] = float(curve.identity.mean())
        rows.append(row)
    keys = rows[0].keys()
    return {key: sum(row[key] for row in rows) / len(rows) for key in keys}


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation of two equally long lists (tied values share their mean rank)."""
    ranks = percentiles(torch.tensor([a, b], dtype=torch.float32).T)  # [N, 2]
    return float(torch.corrcoef(ranks.T)[0, 1])


SWEEP_MEASURE = {"expression": "mouth_std", "head_motion": "head_amplitude"}  # what each control should move


def intensity_sweep(
    pipe: RAPPipeline, control: str, levels: list[float], clips: int, seconds: float, seed: int = 0, **options
) -> tuple[list[dict], float]:
    """evaluate() at each level of `control` ("expression" or "head_motion"; the other stays at 0.5) ->
    (one row per level, Spearman rank correlation of the levels with the measure the control drives)."""
    rows = [{control: level, **evaluate(pipe, clips, seconds, seed, **{control: level}, **options)} for level in levels]
    return rows, spearman(levels, [row[SWEEP_MEASURE[control]] for row in rows])
