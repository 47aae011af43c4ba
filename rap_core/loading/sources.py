"""Where each weight file comes from, and finding it on disk.

Files live under a models root (ComfyUI's `models/rap/`) in a folder named after their Hugging
Face repo, at the same relative path as in the repo. Nothing is downloaded unless asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import MissingWeightsError
from ..models.audio import WAV2VEC2_REPO


@dataclass(frozen=True)
class WeightSource:
    repo: str  # Hugging Face repo id
    files: tuple[str, ...]  # paths inside the repo; a single file is returned as is, several as their folder

    def local_path(self, models_root: str | os.PathLike) -> str:
        base = os.path.join(os.fspath(models_root), self.repo.split("/")[-1])
        if len(self.files) == 1:
            return os.path.join(base, self.files[0])
        return os.path.normpath(os.path.join(base, os.path.dirname(self.files[0])))


FLASHHEAD_LITE_DIT = WeightSource(
    "Soul-AILab/SoulX-FlashHead-1_3B", ("Model_Lite/diffusion_pytorch_model.safetensors",)
)
LTX_VIDEO_VAE = WeightSource("Soul-AILab/SoulX-FlashHead-1_3B", ("VAE_LTX/diffusion_pytorch_model.safetensors",))
WAV2VEC2_BASE = WeightSource(WAV2VEC2_REPO, ("config.json", "model.safetensors"))
FANTASYTALKING = WeightSource("acvlab/FantasyTalking", ("fantasytalking_model.ckpt",))
FANTASYTALKING_FP16 = WeightSource("Kijai/WanVideo_comfy", ("fantasytalking_fp16.safetensors",))


def locate(source: WeightSource, models_root: str | os.PathLike, download: bool = False) -> str:
    """Path of `source` under `models_root`; fetches missing files first only when `download` is true."""
    base = os.path.join(os.fspath(models_root), source.repo.split("/")[-1])
    missing = [f for f in source.files if not os.path.isfile(os.path.join(base, f))]
    if missing and download:
        from huggingface_hub import hf_hub_download

        for name in missing:
            hf_hub_download(source.repo, name, local_dir=base)
    elif missing:
        folder, filename = os.path.split(os.path.join(base, missing[0]))
        raise MissingWeightsError(filename, folder, source.repo, hint="Or enable the loader's download option.")
    return source.local_path(models_root)
