"""The engine stands alone: no ComfyUI import, clear errors for unknown presets and missing files."""

import ast
import dataclasses
import pathlib
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from rap_core.config import get_preset, preset_names
from rap_core.errors import CheckpointError, MissingWeightsError, RAPInputError
from rap_core.loading.checkpoint import read_state_dict
from rap_core.loading.sources import FLASHHEAD_LITE_DIT, WAV2VEC2_BASE, locate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_rap_core_imports_with_comfy_unavailable():
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['comfy'] = None  # any 'import comfy' now raises ImportError\n"
        "import rap_core\n"
        "for m in pkgutil.walk_packages(rap_core.__path__, 'rap_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'comfy' and sys.modules[k] is not None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_under_rap_core_imports_comfy():
    offenders = []
    for path in (ROOT / "rap_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path}:{n}" for n in names if n.split(".")[0] in ("comfy", "comfy_api", "folder_paths")]
    assert offenders == []


def test_presets_are_frozen_and_unknown_names_are_explained():
    assert {"tiny", "flashhead-lite", "rap-1.3b"} <= set(preset_names())
    lite, rap = get_preset("flashhead-lite"), get_preset("rap-1.3b")
    assert (lite.dit.audio_mode, rap.dit.audio_mode) == ("window", "hybrid")
    assert (lite.vae.spatial_stride, lite.vae.temporal_stride) == (32, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lite.dit.dim = 3
    with pytest.raises(RAPInputError, match="flashhead-lite"):
        get_preset("flashhead")


def test_missing_weights_name_file_folder_and_repo(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        locate(FLASHHEAD_LITE_DIT, tmp_path)
    message = str(err.value)
    assert "diffusion_pytorch_model.safetensors" in message
    assert str(tmp_path / "SoulX-FlashHead-1_3B" / "Model_Lite") in message
    assert "Soul-AILab/SoulX-FlashHead-1_3B" in message
    with pytest.raises(MissingWeightsError, match="facebook/wav2vec2-base-960h"):
        locate(WAV2VEC2_BASE, tmp_path)


def test_present_weights_are_found(tmp_path):
    folder = tmp_path / "wav2vec2-base-960h"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_text("{}")
    assert locate(WAV2VEC2_BASE, tmp_path) == str(folder)


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "dit.safetensors"
    save_file({"w": torch.randn(64, 64)}, path)
    assert read_state_dict(path)["w"].shape == (64, 64)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="dit.safetensors"):
        read_state_dict(path)
