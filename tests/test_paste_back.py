"""A portrait animated in place: RAPPipeline frames the face (rap_core/framing.py), animates it with
the demo model and pastes the frames back into the photo (paste_back=True).

The photos are off-centre in larger grey canvases of odd size: the demo's own cartoon portrait
(its model animates the synthetic cartoon world, so there the mouth follows the speech), and
scikit-image's astronaut, a real photograph, for the geometry. The speech is the shipped recording.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from skimage import data as skimage_data

from rap_core import RAPPipeline
from rap_core.face import CENTRE_FACE
from rap_core.framing import FEATHER
from rap_core.media.container import read_audio, read_image

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CANVAS = (523, 701)  # (height, width)


def in_canvas(image: torch.Tensor, side: int, top: int, left: int) -> torch.Tensor:
    """image [H, W, 3] 0..1 scaled to side x side at (top, left) on a grey CANVAS -> [523, 701, 3]."""
    canvas = torch.full((*CANVAS, 3), 0.5)
    x = F.interpolate(rearrange(image.float(), "h w c -> 1 c h w"), size=(side, side), mode="bilinear", antialias=True)
    canvas[top : top + side, left : left + side] = rearrange(x[0], "c h w -> h w c")
    return canvas


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return in_canvas(read_image(ASSETS / "rap_portrait.png"), 300, 180, 330)


@pytest.fixture(scope="module")
def demo() -> RAPPipeline:
    return RAPPipeline.from_preset("demo")


@pytest.fixture(scope="module")
def speech() -> tuple[torch.Tensor, int]:
    waveform, rate = read_audio(ASSETS / "rap_speech.wav")
    return waveform[:, : int(1.6 * rate)], rate  # [1, S]: 1.6 s


@pytest.fixture(scope="module")
def talks(demo, photo, speech):
    """The pasted-back talk with the speech, and with silence of the same length (same seed)."""
    waveform, rate = speech
    return (
        demo.generate(photo, waveform, rate, seed=1, paste_back=True),
        demo.generate(photo, torch.zeros_like(waveform), rate, seed=1, paste_back=True),
    )


def test_frames_come_at_the_photos_size(talks, speech):
    waveform, rate = speech
    talk, _ = talks
    assert talk.shape == (math.ceil(waveform.shape[-1] / rate * 25), *CANVAS, 3)


def outside(box) -> torch.Tensor:
    """[523, 701] bool: the pixels farther than the feather width outside `box`."""
    top, bottom, left, right = box
    ramp = int(np.ceil(FEATHER * min(bottom - top, right - left)))
    mask = torch.ones(CANVAS, dtype=torch.bool)
    mask[max(top - ramp, 0) : bottom + ramp, max(left - ramp, 0) : right + ramp] = False
    return mask


def test_outside_the_box_is_the_photo(demo, photo, talks):
    far = outside(demo.frame(photo).box)
    for talk in talks:
        assert (talk[:, far] - photo[far]).abs().max() <= 1 / 255


def test_a_real_photograph_comes_back_at_its_size_around_its_face(demo, speech):
    """scikit-image's astronaut (the demo paints a cartoon over it; the geometry is what is checked)."""
    photo = in_canvas(torch.from_numpy(skimage_data.astronaut()) / 255, 256, 150, 170)
    waveform, rate = speech
    talk = demo.generate(photo, waveform[:, : rate // 2], rate, paste_back=True)  # 0.5 s
    assert talk.shape == (13, *CANVAS, 3)
    framing = demo.frame(photo)
    assert framing.face is not None
    far = outside(framing.box)
    assert far.float().mean() > 0.8  # the face's region, not the whole canvas
    assert (talk[:, far] - photo[far]).abs().max() <= 1 / 255


def test_the_face_is_framed_and_the_box_changes_with_the_speech(demo, photo, talks):
    framing = demo.frame(photo)
    face_top, face_bottom, face_left, face_right = framing.face
    top, bottom, left, right = framing.box
    assert top <= face_top and face_bottom <= bottom and left <= face_left and face_right <= right
    assert (bottom - top, right - left) != CANVAS  # the face's region, not the whole canvas
    mouth = (slice(round((face_top + face_bottom) / 2), round(face_bottom)), slice(round(face_left), round(face_right)))
    spoken, silent = (talk[:, mouth[0], mouth[1]] for talk in talks)  # [N, h, w, 3]: the face's lower half
    assert (spoken - silent).abs().mean() > 0.01  # the speech, not the noise (same seed), drives it (0.04)
    assert spoken.std(dim=0).mean() > 3 * silent.std(dim=0).mean()  # it moves with the speech (10x)


def test_the_detected_face_feeds_the_identity_branch(demo, photo, speech, talks):
    """The demo DiT's identity branch sees the detected face (Framing.face_box), not the centre guess."""
    waveform, rate = speech
    detected = demo.frame(photo).face_box()
    assert torch.equal(demo.generate(photo, waveform, rate, seed=1, paste_back=True, face_box=detected), talks[0])
    assert not torch.equal(
        demo.generate(photo, waveform, rate, seed=1, paste_back=True, face_box=CENTRE_FACE), talks[0]
    )
