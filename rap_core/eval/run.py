"""`python -m rap_core eval`: a preset animates unseen synthetic faces saying held-out speech
(voices and texts never used in training); lip sync and drift are measured on what it makes."""

from __future__ import annotations

import torch

from ..pipeline import RAPPipeline
from ..synthetic import SAMPLE_RATE, layout, portrait, sample_identity, sample_utterance, synthesize
from .drift import drift_curve, drift_ratio
from .lipsync import lipsync_score, loudness_envelope, mouth_opening, shuffled_control

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
    """Mean lip-sync r, best lag, shuffled-audio r and (for talks of at least 10 s) the drift
    ratio over `clips` held-out talks of `seconds` each; `options` are sampling options."""
    size, fps = pipe.config.height, pipe.config.fps
    rows = []
    for index in range(clips):
        identity = sample_identity(HELDOUT_IDENTITIES + seed + index)
        still, marks = portrait(identity, size), layout(identity, size)
        audio = heldout_speech(seed * 1000 + index * 100, seconds)
        frames = pipe.generate(still, audio, SAMPLE_RATE, seed=seed + index, **options)
        opening, envelope = mouth_opening(frames, marks.mouth_box), loudness_envelope(audio, SAMPLE_RATE, fps)
        sync = lipsync_score(opening, envelope)
        row = {"r": sync.r, "lag": sync.lag, "shuffled_r": shuffled_control(opening, envelope, seed=index)}
        if frames.shape[0] >= 2 * 5 * fps:
            curve = drift_curve(frames, still, marks.background, marks.face_skin)
            row["drift_ratio"] = drift_ratio(curve.background, fps)
        rows.append(row)
    keys = rows[0].keys()
    return {key: sum(row[key] for row in rows) / len(rows) for key in keys}
