"""One real ComfyUI server, with this repo mounted as a pack, for every test in tests/comfy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import ComfyServer


@pytest.fixture(scope="session")
def comfy_server() -> Iterator[ComfyServer]:
    """The session's server. At teardown its log must hold no ``IMPORT FAILED``,
    ``Cannot import`` or ``Traceback`` line (outside ``expect_errors`` blocks)."""
    with ComfyServer() as server:
        yield server
        problems = server.log_problems()
        tail = server.log_tail(80)
    assert not problems, "ComfyUI log has problems:\n" + "\n".join(problems) + "\n--- log tail ---\n" + tail
