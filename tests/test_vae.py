"""VAE choice per request: a file from models/VAE changes the decode, Automatic gives back the
checkpoint's own VAE (untouched), the infotext names the VAE and its hash, the fp16 overflow
("black image") falls back to fp32, and bad names or files are clear errors."""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from webui.errors import UserError
from webui.metadata.infotext import parse_infotext
from webui.serving.service import Service
from webui.settings import Settings
from webui.models.tiny_models import build_tiny_pipeline, vae_to_original
from webui.models.vae import VaeLibrary, load_vae


def original_vae_sd(vae) -> dict:
    """An A1111 VAE file's contents: original layout, no `first_stage_model.` prefix."""
    return {k.split(".", 1)[1]: v.contiguous() for k, v in vae_to_original(vae).items()}


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    vae_dir = root / "VAE"
    vae_dir.mkdir()
    own = build_tiny_pipeline("sd1").vae
    other = copy.deepcopy(own)
    with torch.no_grad():  # a different VAE: every decoder weight nudged
        g = torch.Generator().manual_seed(3)
        for p in other.decoder.parameters():
            p.add_(0.3 * p.std().nan_to_num(0) * torch.randn(p.shape, generator=g))
    save_file(original_vae_sd(other), str(vae_dir / "painterly.safetensors"))
    torch.save({"state_dict": original_vae_sd(other)}, vae_dir / "painterly-copy.pt")
    other.save_pretrained(vae_dir / "painterly-diffusers")
    # The fp16 "black image" VAE: the decoder's first layer is scaled so its activations pass
    # 65504 (inf in half precision) while float32 decodes fine after the next group norm.
    hot = copy.deepcopy(own)
    with torch.no_grad():
        hot.decoder.conv_in.weight.mul_(2e5)
        hot.decoder.conv_in.bias.mul_(2e5)
    save_file(original_vae_sd(hot), str(vae_dir / "overflow.safetensors"))
    (vae_dir / "notavae.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (root / "outside.safetensors").write_bytes(b"x")
    return root


def gen(svc, **fields):
    base = dict(prompt="portrait of a painter", seed=3, steps=1, width=64, height=64, sampler_name="Euler",
                save_images=False)
    base.update(fields)
    return svc.generate(svc.request(base))


@pytest.fixture(scope="module")
def svc(models_dir, tmp_path_factory):
    return Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path_factory.mktemp("o"), device="cpu"))


def test_vae_file_changes_decode_and_automatic_restores(svc, models_dir):
    base = gen(svc)
    own_vae = svc.manager.active.pipe.vae
    before = {k: v.clone() for k, v in own_vae.state_dict().items()}
    chosen = gen(svc, sd_vae="painterly.safetensors")
    diff = np.abs(np.asarray(chosen.images[0], np.int16) - np.asarray(base.images[0], np.int16)).max()
    assert diff > 10
    again = gen(svc, sd_vae="Automatic")
    assert again.images[0].tobytes() == base.images[0].tobytes()
    assert all(torch.equal(v, own_vae.state_dict()[k]) for k, v in before.items())  # never modified
    info = parse_infotext(chosen.infotexts[0])
    sha = hashlib.sha256((models_dir / "VAE" / "painterly.safetensors").read_bytes()).hexdigest()
    assert info["VAE"] == "painterly.safetensors" and info["VAE hash"] == sha[:10]
    assert "VAE" not in parse_infotext(base.infotexts[0])
    # Cached: the second use does not load the file again.
    cached = svc.manager.vae_cache.values()
    gen(svc, sd_vae="painterly")  # the stem works too
    assert svc.manager.vae_cache.values()[-1] is cached[-1]


def test_pt_and_diffusers_folder_load_the_same_weights(models_dir, svc):
    lib = VaeLibrary(models_dir / "VAE")
    like = svc.manager.active.pipe.vae
    assert [v.name for v in lib.list()] == ["notavae.safetensors", "overflow.safetensors", "painterly-copy.pt",
                                           "painterly-diffusers", "painterly.safetensors"]
    a = load_vae(lib.find("painterly.safetensors"), like).state_dict()
    for name in ("painterly-copy.pt", "painterly-diffusers"):
        b = load_vae(lib.find(name), like).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("name, message", [
    ("nosuch.safetensors", "unknown VAE 'nosuch.safetensors'; choose Automatic or one of"),
    ("../outside.safetensors", "outside"),
    ("/etc/passwd", "not a name"),
    ("notavae.safetensors", "notavae.safetensors"),
])
def test_bad_vae_choices_are_user_errors(svc, name, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as e:
        gen(svc, sd_vae=name)
    assert e.value.field in ("sd_vae", None)


def test_fp16_overflow_decodes_again_in_fp32(models_dir, tmp_path):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu", dtype="fp16"))
    r = gen(svc, sd_vae="overflow.safetensors")
    assert any("NaN" in w and "fp32" in w for w in r.warnings), r.warnings
    pixels = np.asarray(r.images[0])
    assert pixels.std() > 1  # a picture, not the flat black of NaNs
    vae = svc.manager.vae_cache.values()[-1]
    assert vae.dtype == torch.float16  # back in half precision for the next request
