"""pytest plugin: collect the repository root as a plain directory, not a Python package.

The root's `__init__.py` is the ComfyUI entry point of the pack and imports ComfyUI, which only
exists inside a ComfyUI process; pytest 8+ would import it before every test.
"""

import pytest


def pytest_collect_directory(path, parent):
    if path == parent.config.rootpath:
        return pytest.Dir.from_parent(parent, path=path)
    return None
