"""The ComfyUI nodes of the pack: loaders -> encoders -> sampler -> decode (-> paste back) (DESIGN.md §4); and
FantasyTalking on core Wan 2.1 models (loader -> apply -> core samplers)."""

from .decode import RAPDecode
from .encode import ENCODERS
from .fantasytalking import RAPFantasyTalkingApply
from .loaders import LOADERS
from .paste import RAPPasteBack
from .sampler import RAPSampler

NODES = [*LOADERS, *ENCODERS, RAPSampler, RAPDecode, RAPPasteBack, RAPFantasyTalkingApply]
