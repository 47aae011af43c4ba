"""The ComfyUI nodes of the pack: loaders -> encoders -> sampler -> decode (DESIGN.md §4)."""

from .decode import RAPDecode
from .encode import ENCODERS
from .loaders import LOADERS
from .sampler import RAPSampler

NODES = [*LOADERS, *ENCODERS, RAPSampler, RAPDecode]
