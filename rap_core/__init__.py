"""rap_core: the standalone RAP / FlashHead talking-portrait engine (never imports ComfyUI)."""

from .errors import CheckpointError, MissingWeightsError, RAPInputError
from .pipeline import RAPPipeline

__all__ = ["CheckpointError", "MissingWeightsError", "RAPInputError", "RAPPipeline"]
