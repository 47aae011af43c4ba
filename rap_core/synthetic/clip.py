"""A synthetic talking-head clip: a face speaking one utterance, with blinks and a swaying head.

The mouth follows the audio, and so does a nod: the head dips with the loudness of the last and
next two frames (the stress of speech, which real speakers mark with their heads too). Blinks (one
every 2-6 s, 3-4 frames long) and the rest of the sway (a slow, smooth random walk) come from the
seed alone, so nothing but the mouth tells what is being said. Each clip also has its own
temperament, drawn from the seed: how wide the mouth opens for the same loudness
(EXPRESSION_GAIN) and how restless the head is (HEAD_ENERGY, which scales both the walk and the
nod); the motion-intensity controls learn from the difference.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from .identity import Identity, sample_identity
from .mouth import REST_WIDTH, mouth_track
from .render import SWAY_LIMIT, render
from .speech import SAMPLE_RATE, Utterance, sample_utterance, synthesize

BLINK_GAP_S = (2.0, 6.0)
_BLINKS = ((0.5, 1.0, 0.5), (0.4, 1.0, 1.0, 0.4))  # eyelid closure over a 3- or 4-frame blink
_SWAY_DAMPING, _SWAY_PULL, _SWAY_NOISE = (
    0.1,
    0.02,
    0.03,
)  # per frame: velocity decay, pull to the centre, velocity noise
EXPRESSION_GAIN = (0.85, 1.2)  # range of the per-clip factor on the mouth opening (clamped to 1)
HEAD_ENERGY = (0.25, 2.0)  # range of the per-clip factor on the walk's velocity noise and the nod's depth
NOD_SHARE = 0.8  # of SWAY_LIMIT: the nod of the most restless clip at full loudness; the walk keeps the rest
NOD_FRAMES = 5  # frames of loudness the nod follows, centred (the audio window's +-2 frames)


@dataclass(frozen=True)
class Clip:
    """One clip; frames and audio share the timeline (frame f starts at sample floor(f*sr/fps))."""

    frames: torch.Tensor  # [T, H, W, 3] float32 in 0..1
    audio: torch.Tensor  # [S] float32 mono
    sample_rate: int
    openness: torch.Tensor  # [T] ground-truth mouth opening in 0..1
    identity: Identity
    utterance: Utterance
    width: torch.Tensor  # [T] mouth width in 0..1 (0 rounded, 1 wide)
    blink: torch.Tensor  # [T] eyelid closure in 0..1
    sway: torch.Tensor  # [T, 2] head offset (x, y), normalised units


def blink_track(rng: random.Random, frames: int, fps: int) -> torch.Tensor:
    """[T] eyelid closure: a 3- or 4-frame blink every BLINK_GAP_S seconds, the first within the first 3 s."""
    track = torch.zeros(frames)
    start = rng.uniform(0.3, 3.0) * fps
    while int(start) < frames:
        shape = torch.tensor(rng.choice(_BLINKS))
        begin = int(start)
        end = min(frames, begin + shape.numel())
        track[begin:end] = shape[: end - begin]
        start += rng.uniform(*BLINK_GAP_S) * fps
    return track


def sway_track(rng: random.Random, openness: torch.Tensor, energy: float = 1.0) -> torch.Tensor:
    """openness [T] (the mouth at gain 1) -> [T, 2] head offset within SWAY_LIMIT: a random walk of
    the velocity (so the head drifts, never jumps), pulled back towards the centre and squashed
    (tanh) into (1 - NOD_SHARE) of the limit, plus a downward nod of up to NOD_SHARE that follows
    the opening averaged over NOD_FRAMES; `energy` scales the walk's velocity noise and the nod."""
    velocity, position, path = [0.0, 0.0], [0.0, 0.0], []
    for _ in range(openness.shape[0]):
        velocity = [v * (1 - _SWAY_DAMPING) + energy * _SWAY_NOISE * rng.gauss(0.0, 1.0) for v in velocity]
        position = [p * (1 - _SWAY_PULL) + v for p, v in zip(position, velocity)]
        path.append(position)
    walk = 0.95 * (1 - NOD_SHARE) * SWAY_LIMIT * torch.tanh(torch.tensor(path, dtype=torch.float32))  # [T, 2]
    padded = F.pad(rearrange(openness.float(), "t -> 1 1 t"), (NOD_FRAMES // 2,) * 2, mode="replicate")
    stress = F.avg_pool1d(padded, NOD_FRAMES, stride=1)[0, 0]  # [T] in 0..1
    depth = NOD_SHARE * SWAY_LIMIT * energy / HEAD_ENERGY[1]
    return walk + torch.stack([torch.zeros_like(stress), depth * stress], dim=1)  # [T, 2]


def make_clip(
    seed: int, size: int = 64, split: str = "train", fps: int = 25, utterance: Utterance | None = None
) -> Clip:
    """The clip of `seed`: identity `seed` says `utterance` (by default the `split` utterance of `seed`)."""
    identity = sample_identity(seed)
    utterance = utterance if utterance is not None else sample_utterance(seed, split)
    audio = synthesize(utterance.text, utterance.voice, utterance.rate, utterance.pitch)
    temperament = random.Random(f"temperament:{seed}")
    gain, energy = temperament.uniform(*EXPRESSION_GAIN), temperament.uniform(*HEAD_ENERGY)
    mouth = mouth_track(audio, SAMPLE_RATE, fps)
    openness = (gain * mouth.openness).clamp(max=1.0)  # [T]
    blink = blink_track(random.Random(f"blink:{seed}"), openness.shape[0], fps)
    sway = sway_track(random.Random(f"sway:{seed}"), mouth.openness, energy)
    return Clip(
        frames=render(identity, openness, mouth.width, blink, sway, size),
        audio=audio,
        sample_rate=SAMPLE_RATE,
        openness=openness,
        identity=identity,
        utterance=utterance,
        width=mouth.width,
        blink=blink,
        sway=sway,
    )


def portrait(identity: Identity, size: int) -> torch.Tensor:
    """The neutral still of `identity` (lips closed, eyes open, head centred): [size, size, 3] float32 in 0..1."""
    still = torch.zeros(1)
    return render(identity, still, torch.full((1,), REST_WIDTH), still, torch.zeros(1, 2), size)[0]
