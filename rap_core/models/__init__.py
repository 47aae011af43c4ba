"""The networks: DiT (with hybrid audio attention), LTX-Video VAE, wav2vec2 audio encoder."""

from .audio import Wav2Vec2Encoder, build_wav2vec2, frame_windows
from .dit import RAPTransformer, build_dit
from .vae import VideoVAE, build_vae

__all__ = [
    "RAPTransformer",
    "VideoVAE",
    "Wav2Vec2Encoder",
    "build_dit",
    "build_vae",
    "build_wav2vec2",
    "frame_windows",
]
