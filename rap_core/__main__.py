"""Command line:
python -m rap_core generate --preset P --image I --audio A --out O.mp4 [...]
python -m rap_core train-vae --preset P --out O [...]   (a VAE from scratch on the synthetic world)
python -m rap_core make-data --preset P --clips N --out D [...]   (synthetic training clips)
python -m rap_core train --preset P --data D --out O [...]   (several processes: torchrun ... -m rap_core train)
python -m rap_core eval --preset P [--dit ... --vae ... --audio-encoder ...] [...]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

import torch
from tqdm import tqdm

from .audio_context import AUDIO_CONTEXTS
from .config import get_preset, preset_names
from .errors import RAPInputError
from .eval.report import format_table
from .eval.run import SWEEP_MEASURE, evaluate, intensity_sweep
from .framing import POLICIES
from .loading.builtin import builtin_vae, has_builtin, load_audio_encoder
from .loading.models import load_vae
from .media.container import read_audio, read_image, write_mp4
from .pipeline import RAPPipeline
from .sampling.continuity import CONTINUITIES
from .timing import video_frame_count
from .training.autoencoder import VAETrainConfig, train_vae
from .training.data import ClipSet, save_clips, synthetic_clips
from .training.trainer import TrainConfig, train

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rap_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="portrait + speech -> talking-portrait mp4")
    gen.add_argument("--preset", default="flashhead-lite", choices=preset_names())
    gen.add_argument("--image", required=True, help="portrait image (png, jpg, ...)")
    gen.add_argument("--audio", required=True, help="speech recording (wav, mp3, flac, ...)")
    gen.add_argument("--out", required=True, help="output .mp4 (written atomically)")
    gen.add_argument("--dit", help="DiT weights (.safetensors), for presets other than tiny")
    gen.add_argument("--vae", help="VAE weights (.safetensors)")
    gen.add_argument("--audio-encoder", help="wav2vec2 folder (facebook/wav2vec2-base-960h)")
    gen.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    gen.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--steps", type=int, help="denoising steps (preset default if omitted)")
    gen.add_argument("--cfg", type=float, dest="cfg_scale", help="audio guidance scale (1 = off)")
    gen.add_argument("--continuity", choices=sorted(CONTINUITIES))
    gen.add_argument("--inherit-latents", type=int, help="n latent frames inherited per step")
    gen.add_argument("--chunk-latents", type=int, help="latent frames per chunk")
    gen.add_argument(
        "--audio-context",
        choices=AUDIO_CONTEXTS,
        help="what speech wav2vec2 hears per chunk (preset default if omitted; flashhead-lite: "
        "reference-stream, as its authors stream; reference-once: the whole file at once, as their once "
        "mode; lookahead: ours, chunk-independent features hearing 8 frames ahead)",
    )
    gen.add_argument(
        "--framing",
        type=_framing,
        help="which part of the photo is animated: face (around the detected face), centre (the photo "
        "scaled to cover the model's size, centre-cropped) or TOP,BOTTOM,LEFT,RIGHT in photo pixels; "
        "preset default if omitted (centre for flashhead-lite, as its authors run it; else face)",
    )
    gen.add_argument(
        "--paste-back",
        action="store_true",
        help="paste the animated part back into the photo: the video gets the photo's size "
        "(cut to even width and height for H.264)",
    )
    gen.add_argument(
        "--expression", type=float, help="mouth/expression intensity 0..1 (0.5 = natural; DiTs with intensity controls)"
    )
    gen.add_argument(
        "--head-motion", type=float, help="head motion intensity 0..1 (0.5 = natural; DiTs with intensity controls)"
    )
    vae = commands.add_parser("train-vae", help="train the preset's VAE from scratch on the synthetic world")
    vae.add_argument("--preset", required=True, choices=preset_names())
    vae.add_argument("--out", required=True, help="folder for vae.safetensors and vae_log.jsonl")
    _config_args(vae, VAETrainConfig)
    make = commands.add_parser("make-data", help="render and encode synthetic talking-head clips for training")
    make.add_argument("--preset", required=True, choices=preset_names())
    make.add_argument("--clips", type=int, default=64)
    make.add_argument("--seed", type=int, default=0, help="first identity/utterance seed")
    make.add_argument("--out", required=True, help="folder for clip_*.safetensors")
    _weight_args(make, dit=False)
    check = commands.add_parser("eval", help="lip sync and drift on unseen faces saying held-out speech")
    check.add_argument("--preset", required=True, choices=preset_names())
    check.add_argument("--clips", type=int, default=4)
    check.add_argument("--seconds", type=float, default=12.0)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--continuity", nargs="+", default=sorted(CONTINUITIES), choices=sorted(CONTINUITIES))
    check.add_argument(
        "--sweep",
        choices=sorted(SWEEP_MEASURE),
        help="instead: sweep this motion-intensity control (first --continuity) over --levels",
    )
    check.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    check.add_argument(
        "--no-identity",
        action="store_true",
        help="ablation: run the DiT without its identity branch (same weights otherwise)",
    )
    _weight_args(check, dit=True)
    fit = commands.add_parser("train", help="train the DiT of a preset on encoded clips (resumes from --out)")
    fit.add_argument("--preset", required=True, choices=preset_names())
    fit.add_argument("--data", required=True, help="folder of clip_*.safetensors (rap_core.training.data)")
    fit.add_argument("--out", required=True, help="folder for state.pt, dit.safetensors (EMA) and log.jsonl")
    _config_args(fit, TrainConfig)
    return parser


def _framing(value: str):
    """--framing: a policy name, or TOP,BOTTOM,LEFT,RIGHT pixels."""
    if value in POLICIES:
        return value
    try:
        box = tuple(float(part) for part in value.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"expected face, centre or TOP,BOTTOM,LEFT,RIGHT pixels; got {value!r}")
    return box


def _config_args(parser: argparse.ArgumentParser, config_type) -> None:
    """One --option per field of a training config dataclass, with its default."""
    defaults = config_type()
    for field in fields(config_type):
        default = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=str if default is None else type(default), default=default
        )


def run_vae_training(args: argparse.Namespace) -> int:
    train_config = VAETrainConfig(**{field.name: getattr(args, field.name) for field in fields(VAETrainConfig)})
    last = train_vae(get_preset(args.preset), args.out, train_config)
    summary = f"step {last['step']}: L1 {last['l1']:.4f}; " if last else f"already trained {train_config.steps} steps; "
    print(f"{summary}weights in {args.out}/vae.safetensors")
    return 0


def _weight_args(parser: argparse.ArgumentParser, dit: bool) -> None:
    if dit:
        parser.add_argument("--dit", help="DiT weights (.safetensors); tiny and demo have built-in ones")
    parser.add_argument("--vae", help="VAE weights (.safetensors); tiny and demo have built-in ones")
    parser.add_argument("--audio-encoder", help="wav2vec2 folder; tiny has a built-in one, mel presets need none")


def make_data(args: argparse.Namespace) -> int:
    config = get_preset(args.preset)
    vae, encoder = _encoders(args, config)
    for index in tqdm(range(args.seed, args.seed + args.clips), unit="clip", desc="make-data"):
        save_clips(args.out, synthetic_clips(config, vae, encoder, 1, index), first_index=index)
    print(f"wrote {args.clips} clips to {args.out}")
    return 0


def _encoders(args: argparse.Namespace, config):
    """The VAE (float32, whatever its file stores) and audio encoder given on the command line, else the
    preset's built-in ones."""
    vae = builtin_vae(config) if args.vae is None else load_vae(args.vae, config, dtype=torch.float32)
    return vae, load_audio_encoder(config, args.audio_encoder)


def run_eval(args: argparse.Namespace) -> int:
    pipe = RAPPipeline.from_preset(args.preset, dit=args.dit, vae=args.vae, audio_encoder=args.audio_encoder)
    if args.no_identity:
        pipe.dit.drop_identity()
    if args.sweep:
        rows, rho = intensity_sweep(
            pipe, args.sweep, args.levels, args.clips, args.seconds, args.seed, continuity=args.continuity[0]
        )
        print(format_table(rows, [args.sweep, "r", "lag", "mouth_std", "head_amplitude"]))
        print(f"spearman({args.sweep}, {SWEEP_MEASURE[args.sweep]}) = {rho:.3f}")
        return 0
    rows = []
    for continuity in tqdm(args.continuity, unit="mode", desc="eval"):
        rows.append(
            {"continuity": continuity, **evaluate(pipe, args.clips, args.seconds, args.seed, continuity=continuity)}
        )
    columns = ["continuity", "r", "lag", "shuffled_r", "mouth_std", "head_amplitude", "drift_ratio", "identity_error"]
    print(format_table(rows, columns))
    return 0


def run_training(args: argparse.Namespace) -> int:
    train_config = TrainConfig(**{field.name: getattr(args, field.name) for field in fields(TrainConfig)})
    last = train(get_preset(args.preset), ClipSet(args.data), args.out, train_config)
    if last and os.environ.get("RANK", "0") == "0":
        print(f"step {last['step']}: loss {last['loss']:.4f}; weights in {args.out}/dit.safetensors")
    return 0


def generate(args: argparse.Namespace) -> int:
    _check_weight_flags(args)
    pipe = RAPPipeline.from_preset(
        args.preset,
        dit=args.dit,
        vae=args.vae,
        audio_encoder=args.audio_encoder,
        device=args.device,
        dtype=_DTYPES[args.dtype],
    )
    options = {
        key: getattr(args, key)
        for key in (
            "audio_context",
            "steps",
            "cfg_scale",
            "continuity",
            "inherit_latents",
            "chunk_latents",
            "expression",
            "head_motion",
        )
        if getattr(args, key) is not None
    }
    waveform, sample_rate = read_audio(args.audio)
    image = read_image(args.image)
    frames = video_frame_count(waveform.shape[-1], sample_rate, pipe.config.fps)
    total = len(pipe.chunk_plan(frames, **options)) * pipe.sampling(**options).steps
    with tqdm(total=total, unit="step", desc="generate") as bar:
        chunks = pipe.stream(
            image,
            waveform,
            sample_rate,
            seed=args.seed,
            progress=lambda *_: bar.update(1),
            framing=args.framing,
            paste_back=args.paste_back,
            **options,
        )
        if args.paste_back:  # the photo's size, cut to even sides for yuv420p
            chunks = (chunk[:, : chunk.shape[1] // 2 * 2, : chunk.shape[2] // 2 * 2] for chunk in chunks)
        written = write_mp4(args.out, chunks, pipe.config.fps, audio=waveform, sample_rate=sample_rate)
    print(f"wrote {args.out}: {written} frames at {pipe.config.fps} fps")
    return 0


def _check_weight_flags(args: argparse.Namespace) -> None:
    """A preset without built-in weights needs its files: say which flags and downloads."""
    if has_builtin(args.preset):
        return
    flags = [
        flag
        for flag, value in (("--dit", args.dit), ("--vae", args.vae), ("--audio-encoder", args.audio_encoder))
        if value is None
    ]
    if flags:
        raise RAPInputError(
            f"Preset '{args.preset}' has no built-in weights: give {', '.join(flags)} (for flashhead-lite: "
            "SoulX-FlashHead-1_3B/Model_Lite/diffusion_pytorch_model.safetensors, .../VAE_LTX/"
            "diffusion_pytorch_model.safetensors and a wav2vec2-base-960h folder, downloaded from the Hugging Face "
            "repos Soul-AILab/SoulX-FlashHead-1_3B and facebook/wav2vec2-base-960h; see README, 'models/rap/'). "
            "To try the pipeline with no downloads: --preset demo --image assets/rap_portrait.png "
            "(a model of a synthetic cartoon world, not of photographs)."
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {
            "generate": generate,
            "train-vae": run_vae_training,
            "make-data": make_data,
            "train": run_training,
            "eval": run_eval,
        }
        return commands[args.command](args)
    except RAPInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
