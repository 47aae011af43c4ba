"""Evaluation: lip sync measured from pixels against the audio's loudness, drift against the
reference portrait over time, and the tables `python -m rap_core eval` prints."""

from .drift import Drift, drift_curve, drift_ratio
from .lipsync import LipSync, lipsync_score, loudness_envelope, mouth_opening, shuffled_control
from .report import format_table

__all__ = [
    "Drift",
    "LipSync",
    "drift_curve",
    "drift_ratio",
    "format_table",
    "lipsync_score",
    "loudness_envelope",
    "mouth_opening",
    "shuffled_control",
]
