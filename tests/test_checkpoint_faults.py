"""Faulty weight files: every fault either loads the right network or raises CheckpointError whose
message names the file and the cause; fp8/fp16/bf16 storage loads to the exactly rounded weights."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from rap_core import RAPInputError
from rap_core.config import get_preset
from rap_core.errors import CheckpointError
from rap_core.loading import load_dit, load_vae
from rap_core.models import build_dit, build_vae

CONFIG = get_preset("tiny")
LOADERS = {"dit": load_dit, "vae": load_vae}
STORAGE = (torch.float8_e4m3fn, torch.float16, torch.bfloat16, torch.float32)
# RMS error of the outputs relative to their RMS, in units of the storage's unit roundoff u = eps/2:
# weights rounded by <= u each move these few-layer outputs by 0.5-3 u (measured for seeds 0-3 and
# every storage dtype), so 6 u holds with margin; fp8 (u = 1/16) thus allows 37 %, fp32 nothing.
ROUNDOFF_UNITS = 6


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    return {"dit": build_dit(CONFIG).eval(), "vae": build_vae(CONFIG).eval()}


def save(state, path, dtype=None):
    """Write `state` as safetensors, floating tensors stored as `dtype` (None: as they are)."""
    cast = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in cast.items()}, path)
    return path


def outputs(kind, model):
    """The network's outputs on a fixed small input, in the model's dtype, as float32."""
    g = torch.Generator().manual_seed(0)
    dtype, c = next(model.parameters()).dtype, CONFIG.vae.latent_channels
    with torch.no_grad():
        if kind == "dit":
            x, ref = torch.randn(2, 1, c, 3, 2, 2, generator=g).to(dtype)  # noisy and reference [1, C, F, h, w]
            audio = torch.randn(1, 3, CONFIG.audio.context_tokens, CONFIG.dit.dim, generator=g).to(dtype)
            return [model(x, ref, torch.tensor([900.0]), audio).float()]
        latents = torch.randn(1, c, 2, 2, 2, generator=g).to(dtype)  # [B, C, F, h, w]
        video = (torch.rand(1, 3, 9, 64, 64, generator=g) * 2 - 1).to(dtype)  # [B, 3, T, H, W]
        return [model.decode(latents).float(), model.encode(video).float()]


def raises_naming(path, cause, load, *args):
    """`load(path, CONFIG)` raises CheckpointError (a RAPInputError) naming `path` and matching `cause`."""
    with pytest.raises(CheckpointError, match=cause) as error:
        load(path, CONFIG, *args)
    assert isinstance(error.value, RAPInputError)
    assert str(path) in str(error.value)
    return str(error.value)


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble_header_length(path):
    data = path.read_bytes()
    path.write_bytes(b"\xff" * 8 + data[8:])  # the header's little-endian byte count: 2^64 - 1


def garble_header_json(path):
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:8] + b"{" * size + data[8 + size :])  # same size, not JSON


@pytest.mark.parametrize("kind", ["dit", "vae"])
@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (cut_in_half, r"could not be read \(SafetensorError: .+\)\. It is probably truncated or corrupt"),
        (garble_header_length, r"could not be read \(SafetensorError: .*header"),
        (garble_header_json, r"could not be read \(SafetensorError: .*JSON"),
    ],
    ids=["truncated", "header-length", "header-json"],
)
def test_damaged_safetensors_name_the_file_and_the_cause(networks, tmp_path, kind, damage, cause):
    """A valid file cut in half, or with its header's length or JSON overwritten, is refused with
    the path and the reader's reason."""
    path = save(networks[kind].state_dict(), tmp_path / f"{kind}.safetensors")
    damage(path)
    raises_naming(path, cause, LOADERS[kind])


def test_damaged_or_unsafe_pickles_name_the_file_and_the_cause(networks, tmp_path):
    """A weights-only .pt cut in half is refused as unreadable; a .pt pickling the whole module
    (not unpickled: that could run code) is refused as not a plain pickle of tensors."""
    truncated = tmp_path / "dit.pt"
    torch.save(networks["dit"].state_dict(), truncated)
    cut_in_half(truncated)
    raises_naming(truncated, r"could not be read \(RuntimeError: .*zip archive.*truncated or corrupt", load_dit)
    whole = tmp_path / "vae_module.pt"
    torch.save(networks["vae"], whole)
    message = raises_naming(whole, r"not a plain pickle of tensors \(Unsupported global: .*VideoVAE", load_vae)
    assert "state_dict()" in message


class UNetLike(nn.Module):
    """A small network of another family, with the key names of a diffusers UNet."""

    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(4, 8, 3, padding=1)
        self.time_embedding = nn.ModuleDict({"linear_1": nn.Linear(8, 16), "linear_2": nn.Linear(16, 16)})
        self.down_blocks = nn.ModuleList([nn.ModuleDict({"resnets": nn.ModuleList([nn.Conv2d(8, 8, 3)])})])
        self.mid_block = nn.ModuleDict({"resnets": nn.ModuleList([nn.Conv2d(8, 8, 3)])})
        self.conv_out = nn.Conv2d(8, 4, 3, padding=1)


def test_files_of_other_networks_name_the_file_and_what_was_expected(networks, tmp_path):
    """A VAE file given as the DiT, a DiT file given as the VAE, and a UNet's file given as either
    are refused with the path, the keys seen and the layouts accepted (or the keys that do not fit)."""
    vae_file = save(networks["vae"].state_dict(), tmp_path / "vae.safetensors")
    dit_file = save(networks["dit"].state_dict(), tmp_path / "dit.safetensors")
    unet_file = save(UNetLike().state_dict(), tmp_path / "unet.safetensors")
    message = raises_naming(vae_file, "Unrecognised DiT checkpoint layout", load_dit)
    assert "decoder.conv_in.conv.weight" in message and "not a VAE" in message
    message = raises_naming(dit_file, "VAE checkpoint has no 'encoder.conv_in.conv.weight'", load_vae)
    assert "audio_proj.norm.weight" in message and "LTX-Video" in message
    # 'time_embedding.*' reads as Wan's layout, so the strict check names what does not fit.
    message = raises_naming(unet_file, "do not fit this model", load_dit)
    assert "missing keys: audio_proj." in message and "unexpected keys: conv_in.bias" in message
    raises_naming(unet_file, "VAE checkpoint has no 'encoder.conv_in.conv.weight'.*conv_in.weight", load_vae)


@pytest.mark.parametrize(
    ("kind", "edit", "cause"),
    [
        ("dit", "drop", r"missing keys: blocks\.1\.ffn\.2\.weight"),
        ("vae", "drop", r"missing keys: latents_std"),
        ("vae", "add", r"unexpected keys: decoder\.extra\.weight"),
        ("dit", "int8", r"integer keys where the model has floats .*audio_proj\.norm\.bias \(file torch\.int8, model"),
        ("vae", "int8", r"integer keys where the model has floats .*decoder\.conv_in\.conv\.weight \(file torch\.int8"),
    ],
    ids=["dit-missing", "vae-missing", "vae-extra", "dit-int8", "vae-int8"],
)
def test_keys_that_do_not_fit_are_named_with_the_file(networks, tmp_path, kind, edit, cause):
    """A missing or extra key, or weights stored as integers (an int8-quantized file), is refused
    naming the file and the keys."""
    state = dict(networks[kind].state_dict())
    if edit == "drop":
        del state["blocks.1.ffn.2.weight" if kind == "dit" else "latents_std"]
    elif edit == "add":
        state["decoder.extra.weight"] = torch.zeros(3)
    else:
        state = {k: v.to(torch.int8) for k, v in state.items()}
    path = save(state, tmp_path / f"{kind}.safetensors")
    raises_naming(path, cause, LOADERS[kind])


@pytest.mark.parametrize("kind", ["dit", "vae"])
@pytest.mark.parametrize("storage", STORAGE, ids=str)
def test_storage_dtypes_load_the_rounded_weights(networks, tmp_path, kind, storage):
    """A file stored in fp8/fp16/bf16/fp32 loads (as float32) to exactly the source weights rounded
    to the storage dtype, and its outputs stay within 6 storage roundoffs of the float32 source's.
    Without a dtype, fp16/bf16 stay as stored and fp8 (nothing computes in it) becomes float32."""
    source = networks[kind]
    path = save(source.state_dict(), tmp_path / f"{kind}.safetensors", storage)
    loaded = LOADERS[kind](path, CONFIG, dtype=torch.float32)
    for name, weight in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight.to(storage).float()), name
    u = torch.finfo(storage).eps / 2
    for got, want in zip(outputs(kind, loaded), outputs(kind, source)):
        assert torch.linalg.vector_norm(got - want) <= ROUNDOFF_UNITS * u * torch.linalg.vector_norm(want)

    native = LOADERS[kind](path, CONFIG)
    native_dtypes = {p.dtype for p in native.parameters()}
    assert native_dtypes == {torch.float32 if storage == torch.float8_e4m3fn else storage}
    if storage == torch.float8_e4m3fn:
        assert all(torch.equal(a, b) for a, b in zip(outputs(kind, native), outputs(kind, loaded)))
