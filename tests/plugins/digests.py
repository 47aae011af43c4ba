"""Digests of outputs, pinned bit for bit in tests/golden/digests.json (issue 21: a refactor must not move
one bit of what the pipeline, the nodes, the live talk or training produce).

A test compares the digest of one case with the pinned one. A change meant to alter outputs re-pins:
`RAP_PIN_DIGESTS=1 .venv/bin/python -m pytest tests/test_digests.py tests/comfy/test_node_digests.py`
writes the sections those tests compute (say why in the commit). The digests are of float32 CPU
arithmetic with the pinned torch on this project's x86_64 machines.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

PINNED = Path(__file__).resolve().parents[1] / "golden" / "digests.json"


def digest(*tensors: torch.Tensor) -> str:
    """sha256 over each tensor's dtype, shape and bytes (on the CPU, contiguous), in order."""
    h = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def check(section: str, case: str, actual: str) -> None:
    """Assert that `actual` is the digest pinned for `case` in `section`; with RAP_PIN_DIGESTS=1, pin it."""
    pinned = json.loads(PINNED.read_text()) if PINNED.exists() else {}
    if os.environ.get("RAP_PIN_DIGESTS") == "1":
        pinned.setdefault(section, {})[case] = actual
        PINNED.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
    expected = pinned.get(section, {}).get(case)
    assert expected is not None, f"no digest pinned for {section}/{case}"
    assert actual == expected, f"{section}/{case}: the output moved (digest {actual[:12]}, pinned {expected[:12]})"
