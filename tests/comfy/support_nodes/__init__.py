"""A test-only ComfyUI node pack, mounted beside ComfyUI-RAP in the test server.

Wan's text encoder (umt5-xxl) has a fixed configuration ComfyUI reads from its own json, with a
256,384-token vocabulary at width 4096: it cannot be made tiny. This node gives the CONDITIONING
such an encoder would, a seeded [1, tokens, 4096] embedding, so core Wan graphs run in tests.
"""

import torch


class TestTextEmbedding:
    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "embed"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                "width": ("INT", {"default": 4096, "min": 1, "max": 8192}),
            }
        }

    def embed(self, seed, tokens, width):
        embedding = torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(seed))
        return ([[embedding, {}]],)


NODE_CLASS_MAPPINGS = {"TestTextEmbedding": TestTextEmbedding}
