"""One real ComfyUI server, with this repo mounted as a pack, for every test in tests/comfy; and
ComfyUI's modules in this process, with the pack imported the way ComfyUI imports it."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator

import pytest
from harness import PACK_NAME, REPO_ROOT, ComfyServer, comfy_dir


@pytest.fixture(scope="session")
def comfy_server() -> Iterator[ComfyServer]:
    """The session's server. At teardown its log must hold no ``IMPORT FAILED``,
    ``Cannot import`` or ``Traceback`` line (outside ``expect_errors`` blocks)."""
    with ComfyServer() as server:
        yield server
        problems = server.log_problems()
        tail = server.log_tail(80)
    assert not problems, "ComfyUI log has problems:\n" + "\n".join(problems) + "\n--- log tail ---\n" + tail


@pytest.fixture(scope="session")
def comfy():
    """(comfy.model_management, {node id: node class}) on the CPU, in this process."""
    sys.path.insert(0, str(comfy_dir()))
    from comfy.cli_args import args

    args.cpu = True  # before comfy.model_management is imported: this machine has no GPU
    import comfy.model_management as mm

    spec = importlib.util.spec_from_file_location(
        PACK_NAME.replace("-", "_"), REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    pack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = pack
    spec.loader.exec_module(pack)
    extension = asyncio.run(pack.comfy_entrypoint())
    nodes = {node.define_schema().node_id: node for node in asyncio.run(extension.get_node_list())}
    yield mm, nodes
    mm.unload_all_models()
