"""The one exception family of rap_core (DESIGN.md §6).

Every message says what was wrong, what was expected, and what to do.
"""


class RAPInputError(ValueError):
    """Bad user input: audio, image, options or files the engine cannot use as given."""


class CheckpointError(RAPInputError):
    """A weights file that is unreadable, of another model, or whose keys/shapes do not fit."""


class MissingWeightsError(CheckpointError):
    """A weights file that is not on disk; the message names the file, the folder and the source repo."""

    def __init__(self, filename: str, folder: str, repo: str, hint: str = "", origin: str = ""):
        self.filename, self.folder, self.repo = filename, folder, repo
        origin = origin or f"download it from the Hugging Face repo '{repo}'"
        message = f"Missing weights file '{filename}'. Put it in '{folder}' ({origin})."
        super().__init__(f"{message} {hint}".strip())
