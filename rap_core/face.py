"""The face crop the identity branch sees (models/identity.py): a box on the prepared portrait,
cut out, resized to the model's resolution and encoded by the VAE as one latent frame.

A box is (top, bottom, left, right) as fractions of the portrait's height and width. Without one,
the crop is CENTRE_FACE: the middle of a head-and-shoulders portrait framed like FlashHead's
(face centred, slightly above the middle). Crops are widened to a square around their centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .errors import RAPInputError
from .models.vae import VideoVAE

CENTRE_FACE = (0.12, 0.72, 0.2, 0.8)


def face_crop(picture: torch.Tensor, box: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """picture [3, H, W] (media.normalise.prepare_image) -> the face [3, H, W]: the box's square, resized."""
    top, bottom, left, right = CENTRE_FACE if box is None else box
    if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
        raise RAPInputError(
            f"A face box is (top, bottom, left, right) as fractions of the portrait, each in 0..1 with top < bottom "
            f"and left < right; got {box}."
        )
    _, height, width = picture.shape
    side = max((bottom - top) * height, (right - left) * width)  # pixels
    centre_y, centre_x = (top + bottom) / 2 * height, (left + right) / 2 * width
    y0 = int(round(min(max(centre_y - side / 2, 0.0), height - min(side, height))))
    x0 = int(round(min(max(centre_x - side / 2, 0.0), width - min(side, width))))
    size = int(round(min(side, height, width)))
    square = picture[:, y0 : y0 + size, x0 : x0 + size]  # [3, s, s]
    return F.interpolate(square[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]


@torch.no_grad()
def encode_face(
    vae: VideoVAE, picture: torch.Tensor, box: tuple[float, float, float, float] | None = None
) -> torch.Tensor:
    """picture [3, H, W] in [-1, 1] on the VAE's device and dtype -> the face latent [1, C, 1, h, w]."""
    return vae.encode(rearrange(face_crop(picture, box), "c h w -> 1 c 1 h w"))
