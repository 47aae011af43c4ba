"""Weight files under ComfyUI's `models/rap/`: the folder, the choices offered, and resolving a choice.

Files sit in a folder named after their Hugging Face repo, at their path inside it
(rap_core.loading.sources), e.g. `models/rap/SoulX-FlashHead-1_3B/Model_Lite/...safetensors`.
Known files are offered even before they are downloaded, so a workflow names them and the loader
either finds them, downloads them when asked, or says exactly where to put them.
"""

from __future__ import annotations

import os

import folder_paths

from ..rap_core.errors import MissingWeightsError, RAPInputError
from ..rap_core.loading.builtin import BUILTIN_PRESETS, has_builtin
from ..rap_core.loading.sources import WeightSource, locate

FOLDER = "rap"
BUILTIN = "built-in"  # tiny: reproducible random networks; demo: the shipped trained ones (rap_core.loading.builtin)
AUTO = "auto"  # the loaders' preset read from the weight file (rap_core.loading.detect)


def register_model_folder() -> None:
    """Add `models/rap` to ComfyUI's folders, after any paths a user's extra_model_paths.yaml gave
    (ComfyUI registers those with no extension filter; weight files are what the loaders list)."""
    default = os.path.join(folder_paths.models_dir, FOLDER)
    paths = list(folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))[0])
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(folder_paths.supported_pt_extensions))


def models_root() -> str:
    return folder_paths.get_folder_paths(FOLDER)[0]


def _relative(source: WeightSource) -> str:
    return os.path.relpath(source.local_path(models_root()), models_root()).replace(os.sep, "/")


def file_choices(*known: WeightSource, builtin: bool = True) -> list[str]:
    """The built-in weights (unless `builtin` is false), then every weight file under the rap folders and the
    known files."""
    names = set(folder_paths.get_filename_list(FOLDER)) | {_relative(source) for source in known}
    return [BUILTIN, *sorted(names)] if builtin else sorted(names)


def folder_choices(*known: WeightSource) -> list[str]:
    """The built-in weights, then every folder with a config.json under the rap folders and the known ones."""
    names = {_relative(source) for source in known}
    for root in folder_paths.get_folder_paths(FOLDER):
        for path, _, files in os.walk(root, followlinks=True):
            if "config.json" in files:
                names.add(os.path.relpath(path, root).replace(os.sep, "/"))
    return [BUILTIN, *sorted(names)]


def _source(name: str, known: tuple[WeightSource, ...]) -> WeightSource | None:
    return next((source for source in known if _relative(source) == name), None)


def resolve(
    name: str, preset: str | None, known: tuple[WeightSource, ...], download: bool = False, dry_run: bool = False
) -> str | None:
    """Path of choice `name` for `preset` (None for the built-in weights; a preset of None has none).
    Missing files of a known source are downloaded when `download` is on (not in a `dry_run`);
    otherwise MissingWeightsError names the missing file, the folder it goes in and the repo it comes from."""
    if name == BUILTIN:
        if preset is None:
            raise RAPInputError(f"There are no '{BUILTIN}' weights here; choose a weight file.")
        if not has_builtin(preset):
            fix = (
                "with preset auto, choose a weight file"
                if preset == AUTO
                else f"choose a weight file for preset '{preset}'"
            )
            raise RAPInputError(
                f"'{BUILTIN}' weights exist only for presets {' and '.join(BUILTIN_PRESETS)}; set the preset to one of "
                f"them, or {fix}."
            )
        return None
    roots = folder_paths.get_folder_paths(FOLDER)
    source = _source(name, known)
    if source is not None:
        for root in roots:
            if all(os.path.isfile(os.path.join(root, source.repo.split("/")[-1], f)) for f in source.files):
                return source.local_path(root)
        if dry_run and download:
            return None
        return locate(source, roots[0], download=download)
    for root in roots:
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    folder, filename = os.path.split(os.path.join(roots[0], name))
    raise MissingWeightsError(filename, folder, "the model's Hugging Face repo (README, 'models/rap/')")


def check(name: str, preset: str | None, known: tuple[WeightSource, ...], download: bool) -> bool | str:
    """validate_inputs for a weight choice: True, or the message saying what is wrong."""
    try:
        resolve(name, preset, known, download, dry_run=True)
    except RAPInputError as error:
        return str(error)
    return True
