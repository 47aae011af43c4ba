"""The identity branch's face crop, and the pipeline feeding it to a DiT that has the branch."""

import dataclasses
import math

import pytest
import torch

from rap_core import RAPInputError
from rap_core.face import CENTRE_FACE, face_crop
from rap_core.loading.models import load_dit
from rap_core.pipeline import RAPPipeline

SR = 16000


def test_face_crop_cuts_the_box_square_and_resizes_it():
    picture = -torch.ones(3, 64, 64)
    picture[:, 16:48, 8:40] = 1.0  # the "face": rows 16..47, columns 8..39
    face = face_crop(picture, (0.25, 0.75, 0.125, 0.625))
    assert face.shape == (3, 64, 64) and torch.allclose(face, torch.ones_like(face))
    wide = face_crop(picture, (0.25, 0.5, 0.125, 0.625))  # 16 x 32 px: widened to 32 x 32 around its centre
    assert wide.shape == (3, 64, 64) and wide.min() < 0 < wide.max()
    assert torch.equal(face_crop(picture), face_crop(picture, CENTRE_FACE))  # no box: the centre policy
    for box in [(0.5, 0.4, 0.1, 0.9), (0.1, 0.9, -0.1, 0.5), (0.0, 1.2, 0.0, 1.0), (math.nan, 0.5, 0.1, 0.9)]:
        with pytest.raises(RAPInputError, match="face box"):
            face_crop(picture, box)


def test_the_pipeline_shows_the_face_to_a_dit_with_the_identity_branch():
    plain = RAPPipeline.from_preset("tiny")
    config = plain.config.replace(dit=dataclasses.replace(plain.config.dit, identity_attention=True))
    dit = load_dit(plain.dit.state_dict(), config)
    with torch.no_grad():
        for attention in dit.identity.attn:  # as if trained: the branch speaks
            attention.o.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    aware = RAPPipeline(config, dit, plain.vae, plain.audio_encoder)
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1))
    audio = 0.1 * torch.randn(SR // 2, generator=torch.Generator().manual_seed(2))
    centre, corner = (aware.generate(image, audio, SR, face_box=box) for box in (None, (0.0, 0.5, 0.0, 0.5)))
    assert centre.shape == corner.shape == (13, 64, 64, 3) and (centre - corner).abs().max() > 1e-3
    assert torch.equal(
        plain.generate(image, audio, SR, face_box=(0.0, 0.5, 0.0, 0.5)), plain.generate(image, audio, SR)
    )
    aware.dit.drop_identity()  # the ablation: the same weights without the branch are the plain DiT
    assert torch.equal(aware.generate(image, audio, SR), plain.generate(image, audio, SR))
