"""Portrait framing (rap_core/framing.py) and its face detector (rap_core/models/blazeface.py).

Photos: scikit-image's bundled astronaut (colour) and cameraman (greyscale), 512x512, whose face boxes
were labelled by hand (brows/forehead to chin, cheek or ear to cheek or nose); every variant moves the
label with the photo. The detector must find each face with IoU >= 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file
from skimage import data as skimage_data

from rap_core.errors import RAPInputError
from rap_core.face_detection import detect_faces
from rap_core.framing import ABOVE_FACE, FACE_RATIO, FEATHER, frame_portrait
from rap_core.loading.builtin import blazeface
from rap_core.media.normalise import prepare_image

GOLDEN = Path(__file__).parent / "golden" / "blazeface" / "outputs.safetensors"
ASTRONAUT_FACE = (80, 172, 178, 268)  # (top, bottom, left, right), hand-labelled
CAMERA_FACE = (122, 198, 180, 256)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The detector's convolutions are tiny: on a busy 2-core machine, torch's intra-op thread hand-offs
    made this file 5x slower than one thread does. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def astronaut() -> torch.Tensor:
    return torch.from_numpy(skimage_data.astronaut()).float() / 255  # [512, 512, 3]


def camera() -> torch.Tensor:
    return torch.from_numpy(skimage_data.camera()).float() / 255  # [512, 512], greyscale


def rgb(image: torch.Tensor) -> torch.Tensor:
    return image[..., None].expand(*image.shape, 3) if image.ndim == 2 else image


def place(canvas_hw, pieces, fill=0.5):
    """Paste [h, w, 3] photos at (top, left) offsets onto a grey canvas -> [H, W, 3]."""
    canvas = torch.full((*canvas_hw, 3), fill)
    for image, (top, left) in pieces:
        canvas[top : top + image.shape[0], left : left + image.shape[1]] = rgb(image)
    return canvas


def scaled(image: torch.Tensor, size: int) -> torch.Tensor:
    x = rearrange(rgb(image), "h w c -> 1 c h w")
    return rearrange(F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)[0], "c h w -> h w c")


def shift(box, dy, dx):
    return (box[0] + dy, box[1] + dy, box[2] + dx, box[3] + dx)


def scale(box, factor):
    return tuple(v * factor for v in box)


def mirror(box, width):
    return (box[0], box[1], width - box[3], width - box[2])


def iou(a, b) -> float:
    inter = max(min(a[1], b[1]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[2], b[2]), 0)
    return inter / ((a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter)


CASES = {
    "astronaut": lambda: (astronaut(), ASTRONAUT_FACE),
    "camera": lambda: (camera(), CAMERA_FACE),
    "astronaut in 1600x1200": lambda: (
        place((1200, 1600), [(astronaut(), (150, 900))]),
        shift(ASTRONAUT_FACE, 150, 900),
    ),
    "camera in 1600x1200": lambda: (place((1200, 1600), [(camera(), (600, 100))]), shift(CAMERA_FACE, 600, 100)),
    "astronaut close-up (face 58% of it)": lambda: (astronaut()[40:200, 140:300], shift(ASTRONAUT_FACE, -40, -140)),
    "camera close-up (face 54% of it)": lambda: (camera()[90:230, 150:290], shift(CAMERA_FACE, -90, -150)),
    "astronaut mirrored": lambda: (astronaut().flip(1), mirror(ASTRONAUT_FACE, 512)),
    "camera mirrored": lambda: (camera().flip(1), mirror(CAMERA_FACE, 512)),
    "astronaut at 40%": lambda: (scaled(astronaut(), 205), scale(ASTRONAUT_FACE, 205 / 512)),
    "camera at 40%": lambda: (scaled(camera(), 205), scale(CAMERA_FACE, 205 / 512)),
    "astronaut beside a smaller camera": lambda: (
        place((512, 800), [(astronaut(), (0, 0)), (scaled(camera(), 256), (128, 532))]),
        ASTRONAUT_FACE,
    ),
    "camera beside a smaller astronaut": lambda: (
        place((600, 800), [(scaled(astronaut(), 256), (300, 10)), (camera(), (40, 280))]),
        shift(CAMERA_FACE, 40, 280),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_face_found_and_framed(case):
    image, label = CASES[case]()
    framing = frame_portrait(image, 512, 512)
    assert framing.face is not None, f"{case}: no face found"
    assert iou(framing.face, label) >= 0.5, f"{case}: face {framing.face} vs label {label}"
    top, bottom, left, right = framing.box
    assert bottom - top == right - left  # square
    assert 0 <= top and bottom <= image.shape[0] and 0 <= left and right <= image.shape[1]
    face_top, face_bottom, face_left, face_right = framing.face
    if bottom - top < min(image.shape[:2]):  # not shrunk to fit the photo: FlashHead's square, 2x the face's width
        assert abs((bottom - top) - FACE_RATIO * (face_right - face_left)) <= 2
        if 0 < top and bottom < image.shape[0]:  # not shifted: 55 % of it above the face's centre
            assert abs((face_top + face_bottom) / 2 - top - ABOVE_FACE * (bottom - top)) <= 1
    assert framing.crop().shape == (512, 512, 3)


@pytest.mark.parametrize("name", ["coffee", "gradient"])
def test_no_face_falls_back_to_centre(name, caplog):
    image = (
        torch.from_numpy(skimage_data.coffee()).float() / 255
        if name == "coffee"
        else torch.linspace(0, 1, 600)[None, :, None].expand(400, 600, 3)
    )
    framing = frame_portrait(image, 256, 256)
    assert "falling back to the 'centre' framing" in caplog.text
    assert framing.face is None and framing.face_box() is None
    assert framing.box == (0, 400, 100, 500)
    assert torch.equal(framing.picture(), prepare_image(image, 256, 256))  # FlashHead's default framing, exactly


def test_uint8_numpy_and_rgba_photos_frame_alike():
    expected = frame_portrait(astronaut(), 256, 256)
    assert frame_portrait(skimage_data.astronaut(), 256, 256).box == expected.box  # uint8 numpy [H, W, 3]
    rgba = torch.cat([astronaut(), torch.ones(512, 512, 1)], dim=-1)  # opaque alpha
    assert frame_portrait(rgba, 256, 256).box == expected.box


def test_centre_and_explicit_policies():
    image = place((1200, 1600), [])
    # the part cover-and-crop keeps (its ceil rounding of the covering size shows at 64 pixels)
    assert frame_portrait(image, 512, 512, policy="centre").box == (0, 1200, 201, 1400)
    assert frame_portrait(image, 64, 48, policy="centre").box == (0, 1200, 353, 1246)  # the model's 4:3 upright
    assert frame_portrait(image, 64, 48, policy=(100, 200, 150, 230)).box == (96, 203, 150, 230)  # made 4:3
    assert frame_portrait(image, 64, 64, policy=(100, 200, 150, 230)).box == (100, 200, 140, 240)  # widened
    assert frame_portrait(image, 64, 64, policy=(0, 50, 1500, 1600)).box == (0, 100, 1500, 1600)  # kept inside


@pytest.mark.parametrize("bad", ["faces", (0, 2000, 0, 10), (10, 5, 0, 10), (1, 2, 3)])
def test_bad_policy(bad):
    with pytest.raises(RAPInputError, match="framing"):
        frame_portrait(place((100, 100), []), 64, 64, policy=bad)


def test_crop_is_the_box_at_model_size():
    image = place((1200, 1600), [(astronaut(), (150, 900))])
    framing = frame_portrait(image, 256, 256)
    top, bottom, left, right = framing.box
    crop = framing.crop()
    expected = scaled(image[top:bottom, left:right], 256)
    assert crop.shape == (256, 256, 3) and crop.min() >= 0 and crop.max() <= 1
    assert (crop - expected).abs().max() < 1e-5
    upright = frame_portrait(image, 128, 96)  # a non-square model: the region has its aspect
    top, bottom, left, right = upright.box
    assert upright.crop().shape == (128, 96, 3) and abs((bottom - top) / (right - left) - 128 / 96) < 0.01


@pytest.mark.parametrize("size", [(256, 256), (256, 192)])
def test_paste(size):
    image = place((1200, 1600), [(astronaut(), (150, 900))])
    framing = frame_portrait(image, *size)
    colour = torch.tensor([0.9, 0.1, 0.3])
    frames = colour.expand(2, *size, 3).clone()
    out = framing.paste(frames)
    assert out.shape == (2, 1200, 1600, 3)
    top, bottom, left, right = framing.box
    ramp = int(np.ceil(FEATHER * min(bottom - top, right - left)))
    outside = torch.ones(1200, 1600, dtype=torch.bool)
    outside[max(top - ramp, 0) : bottom + ramp, max(left - ramp, 0) : right + ramp] = False
    assert (out[:, outside] - image[outside]).abs().max() <= 1 / 255
    assert torch.equal(out[0, ~_region(framing.box)], image[~_region(framing.box)])
    inside = out[:, top + ramp + 1 : bottom - ramp - 1, left + ramp + 1 : right - ramp - 1]
    assert (inside - colour).abs().max() < 1e-5  # the box shows the frames
    seam = out[0, top + ramp // 2, (left + right) // 2]  # on the ramp: between photo and frame
    photo = image[top + ramp // 2, (left + right) // 2]
    assert ((seam - photo).abs() > 1e-3).any() and ((seam - colour).abs() > 1e-3).any()


def _region(box):
    mask = torch.zeros(1200, 1600, dtype=torch.bool)
    mask[box[0] : box[1], box[2] : box[3]] = True
    return mask


def test_paste_rejects_bad_frames():
    framing = frame_portrait(place((100, 100), []), 64, 64, policy="centre")
    with pytest.raises(RAPInputError, match="frames"):
        framing.paste(torch.zeros(64, 64, 3))
    with pytest.raises(RAPInputError, match="float"):
        framing.paste(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))
    with pytest.raises(RAPInputError, match="NaN"):
        framing.paste(torch.full((1, 64, 64, 3), float("nan")))
    assert framing.paste(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 100, 100, 3)  # numpy frames


def test_port_matches_tflite_golden():
    """Raw outputs of the torch port vs MediaPipe's .tflite run by the TFLite runtime (tests/golden/blazeface)."""
    golden = load_file(GOLDEN)
    image = skimage_data.astronaut().astype(np.float32).reshape(128, 4, 128, 4, 3).mean(axis=(1, 3))  # [128, 128, 3]
    x = rearrange(torch.from_numpy(image / 127.5 - 1.0), "h w c -> 1 c h w")
    with torch.no_grad():
        regressors, logits = blazeface()(x)
    torch.testing.assert_close(logits[0], golden["logits"], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(regressors[0, golden["anchors"]], golden["regressors"], atol=1e-3, rtol=1e-5)


def megapixel(face_size: int, top: int, left: int) -> tuple[torch.Tensor, tuple]:
    """The astronaut scaled to face_size pixels at (top, left) on a grey 1152x864 canvas -> ([3, 864, 1152], label)."""
    photo = place((864, 1152), [(scaled(astronaut(), face_size), (top, left))])
    return rearrange(photo, "h w c -> c h w"), shift(scale(ASTRONAUT_FACE, face_size / 512), top, left)


@pytest.mark.parametrize("face_size", [300, 800])
def test_detector_finds_small_and_large_faces_in_a_megapixel_photo(face_size):
    image, label = megapixel(face_size, 864 - face_size - 20, 1152 - face_size - 40)
    faces = detect_faces(image)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box.tolist()  # photo pixels
    assert iou((y0, y1, x0, x1), label) >= 0.5, f"{faces[0].box} vs label {label}"
    eyes = faces[0].keypoints[:2]  # [2, 2] (x, y)
    assert ((eyes[:, 0] > x0) & (eyes[:, 0] < x1) & (eyes[:, 1] > y0) & (eyes[:, 1] < y1)).all()


def test_detector_scales_the_photo_down_once(monkeypatch):
    """Every search level and second look reads one working image (the finest windows at 128 pixels) or a
    small crop of the photo: the full photo goes through a resize once, not once per level."""
    image, _ = megapixel(300, 400, 700)
    sizes = []
    resize = F.interpolate

    def counted(x, *args, **kwargs):
        sizes.append(x.shape[-2] * x.shape[-1])
        return resize(x, *args, **kwargs)

    monkeypatch.setattr(F, "interpolate", counted)
    assert len(detect_faces(image)) == 1
    assert sizes.count(864 * 1152) == 1
    assert sum(sizes) < 1.5 * 864 * 1152


def test_detector_input():
    assert detect_faces(torch.full((3, 2, 2), 0.5)) == []  # too small to hold a face
    with pytest.raises(RAPInputError, match=r"\[3, H, W\]"):
        detect_faces(torch.zeros(64, 64, 3))
