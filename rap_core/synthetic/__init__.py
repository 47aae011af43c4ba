"""A procedural talking-head world: cartoon faces whose mouths follow espeak-ng speech.

Deterministic by seed and fast on a CPU, it makes training data and ground truth for the demo
model: `make_clip(seed)` gives frames, audio, the true mouth opening and everything that drew them;
`layout` tells which pixels are stable background, bare skin or mouth.
"""

from .clip import Clip, blink_track, make_clip, portrait, sway_track
from .identity import Identity, sample_identity
from .mouth import MouthTrack, mouth_track
from .render import SWAY_LIMIT, Layout, layout, render
from .speech import SAMPLE_RATE, Utterance, sample_utterance, synthesize, texts, voices

__all__ = [
    "SAMPLE_RATE",
    "SWAY_LIMIT",
    "Clip",
    "Identity",
    "Layout",
    "MouthTrack",
    "Utterance",
    "blink_track",
    "layout",
    "make_clip",
    "mouth_track",
    "portrait",
    "render",
    "sample_identity",
    "sample_utterance",
    "sway_track",
    "synthesize",
    "texts",
    "voices",
]
