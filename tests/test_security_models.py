"""Model names and model files are safe to take from anyone.

* Every model kind lists and loads only what really lies in its own folder: a symlink leading
  out (to a file, or a symlinked subfolder) is neither listed -- by the Python listings or the
  REST listing routes -- nor read when a request names it; a link to another place inside the
  folder is fine.
* A ControlNet name is a listed model or a Hub id from the local cache, never a path relative to
  the server's working directory.
* A damaged embedding only matters to prompts that use its name as a word, and then as a warning.

Reads are watched with an audit hook: any Python-level open of a file outside the models folders
during a request fails the test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from webui.engine.extensions import controlnet, ipadapter
from webui.models import mediapipe_models, faces
from webui.errors import UserError
from webui.metadata.infotext import parse_infotext
from webui.engine.jobs import Job
from webui.engine.previews import find_taesd
from webui.models.safety import load_safety_filter
from webui.serving.service import Service
from webui.settings import Settings
from webui.models.upscalers import get_upscaler, list_upscalers, resolve_model_file

API = "/sdapi/v1"
BASE = dict(prompt="portrait", negative_prompt="", seed=7, steps=1, width=64, height=64, sampler_name="Euler",
            save_images=False)
LEAKS = ("escape", "escdir", "escpipe", "inner", "mixed", "outside", "Escaped")

# ---- watching reads ------------------------------------------------------------------------------

_WATCHED: list[str] = []
_READS: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _WATCHED:
        return
    try:
        if isinstance(args[0], int):
            return
        real = os.path.realpath(os.fsdecode(args[0]))
        if any(real == w or real.startswith(w + os.sep) for w in _WATCHED):
            _READS.append(real)
    except Exception:  # noqa: BLE001 - an audit hook must never break the code it watches
        pass


sys.addaudithook(_audit)


@contextlib.contextmanager
def no_reads(*roots: Path):
    """Fail if anything under `roots` is opened from Python inside the block."""
    _READS.clear()
    _WATCHED[:] = [os.path.realpath(r) for r in roots]
    try:
        yield
    finally:
        _WATCHED.clear()
    assert not _READS, f"files outside the models folders were read: {sorted(set(_READS))}"


# ---- the models tree -----------------------------------------------------------------------------

def embedding_pt(path: Path, width: int = 32) -> None:
    torch.save({"string_to_param": {"*": torch.ones(2, width)}}, path)


def preset_json(path: Path, name: str) -> None:
    """A valid preset (a shipped one, renamed): one that would load if its file were read."""
    from webui.prompts.presets import PRESETS_DIR

    data = json.loads((PRESETS_DIR / "oil_painting.json").read_text(encoding="utf-8"))
    path.write_text(json.dumps({**data, "name": name, "name_zh": name}), encoding="utf-8")


def link(at: Path, target: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(target, target_is_directory=target.is_dir())


@pytest.fixture(scope="module")
def tree(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """work/models with real models, links inside (fine) and links out (refused) in every folder;
    work/embeddings is A1111's second embeddings folder."""
    from webui.models.tiny_models import build_tiny_controlnet

    base = tmp_path_factory.mktemp("security")
    out, work = base / "outside", base / "work"
    models = work / "models"
    out.mkdir()
    # What lies outside: valid models of every kind (reading one would succeed), and junk.
    shutil.copy(tiny_models["sd1"].file, out / "ckpt.safetensors")
    shutil.copytree(tiny_models["sd1"].folder, out / "ckpt-folder")
    shutil.copytree(tiny_models["sd1"].folder / "vae", out / "vae-folder")
    net = build_tiny_controlnet("sd1")
    net.save_pretrained(out / "cn-folder")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "cn.safetensors"))
    embedding_pt(out / "emb.pt")
    (out / "junk.bin").write_bytes(b"\x00not a model\x00" * 16)
    (out / "encoder").mkdir()
    (out / "encoder" / "config.json").write_text(json.dumps({"hidden_size": 7, "projection_dim": 7}))
    preset_json(out / "preset.json", "Escaped Preset")
    plain = out / "plain"  # a folder of files of every extension, for symlinked subfolders
    plain.mkdir()
    shutil.copy(out / "ckpt.safetensors", plain / "inner.safetensors")
    embedding_pt(plain / "inner.pt")
    for ext in (".pth", ".ckpt", ".bin", ".onnx"):
        shutil.copy(out / "junk.bin", plain / f"inner{ext}")
    preset_json(plain / "inner.json", "Escaped Inner Preset")

    sd = models / "Stable-diffusion"
    sd.mkdir(parents=True)
    shutil.copy(tiny_models["sd1"].file, sd / "alpha.safetensors")
    link(sd / "escape.safetensors", out / "ckpt.safetensors")
    link(sd / "escdir", plain)
    link(sd / "escpipe", out / "ckpt-folder")

    lora = models / "Lora"
    (lora / "realsub").mkdir(parents=True)
    (lora / "realsub" / "deep.safetensors").write_bytes(b"x")
    link(lora / "insub", lora / "realsub")  # a symlinked subfolder inside the folder: fine
    link(lora / "escape.safetensors", out / "junk.bin")
    link(lora / "escdir", plain)

    vae = models / "VAE"
    vae.mkdir()
    (vae / "soft.safetensors").write_bytes(b"x")
    link(vae / "inlink.safetensors", vae / "soft.safetensors")  # a link inside: fine
    link(vae / "escape.safetensors", out / "junk.bin")
    link(vae / "escdir", plain)
    link(vae / "escpipe", out / "vae-folder")
    (vae / "mixed").mkdir()  # a diffusers folder whose weights link out
    shutil.copy(out / "vae-folder" / "config.json", vae / "mixed" / "config.json")
    for f in (out / "vae-folder").glob("*.safetensors"):
        link(vae / "mixed" / f.name, f)

    for folder, n in ((work / "embeddings", 1), (models / "embeddings", 2)):
        folder.mkdir(parents=True)
        embedding_pt(folder / f"mine{n}.pt")
        link(folder / f"escape{n}.pt", out / "emb.pt")
        link(folder / f"escdir{n}", plain)

    cn = models / "ControlNet"
    cn.mkdir()
    shutil.copy(out / "cn.safetensors", cn / "tiny-cn.safetensors")
    link(cn / "escape.safetensors", out / "cn.safetensors")
    link(cn / "escpipe", out / "cn-folder")
    link(cn / "escdir", plain)
    link(cn / "annotators" / "body_pose_model.pth", out / "junk.bin")

    ip = models / "ipadapter"
    link(ip / "escape.safetensors", out / "junk.bin")
    link(ip / "escdir", plain)
    link(ip / "escpipe", out / "encoder")

    link(models / "ESRGAN" / "escape.pth", out / "junk.bin")
    link(models / "ESRGAN" / "escdir", plain)
    link(models / "VAE-approx" / "taesd_decoder.safetensors", out / "junk.bin")
    link(models / "VAE-approx" / "taesdxl", out / "vae-folder")
    link(models / "face_detection" / "face_detection_yunet_2099dec.onnx", out / "junk.bin")
    link(models / "face_detection" / "escape.pt", out / "junk.bin")
    link(models / "face_detection" / "escdir", plain)
    link(models / "presets" / "escape.json", out / "preset.json")
    link(models / "presets" / "escdir", plain)
    return {"outside": out, "models": models, "work": work}


@pytest.fixture(scope="module")
def service(tree, tmp_path_factory) -> Service:
    settings = Settings(models_dir=tree["models"], outputs_dir=tmp_path_factory.mktemp("sec-out"), device="cpu")
    return Service.create(settings)


def clean(names) -> bool:
    return not any(bad in str(n) for n in names for bad in LEAKS)


def refused(call, field: str):
    with pytest.raises(UserError) as e:
        call()
    assert e.value.field == field, (e.value, e.value.field)
    return str(e.value)


def gen(service, **fields):
    return service.generate(service.request({**BASE, **fields}))


def picture() -> Image.Image:
    return Image.new("RGB", (64, 64), "gray")


def unit(model: str, module: str = "none") -> dict:
    return dict(enabled=True, model=model, module=module, image=picture(), weight=1.0)


# ---- links out: never listed ---------------------------------------------------------------------

def test_no_listing_shows_a_link_out(service, tree, monkeypatch):
    models = tree["models"]
    assert [c.name for c in service.catalog.refresh()] == ["alpha"]
    assert service.manager.vaes.names() == ["Automatic", "inlink.safetensors", "soft.safetensors"]
    assert [f.rel for f in service.manager.loras.list()] == ["insub/deep", "realsub/deep"]
    assert sorted(service.manager.embeddings.files()) == ["mine1", "mine2"]
    assert controlnet.list_models(models) == ["tiny-cn"]
    assert ipadapter.list_adapters(models) == []
    assert clean(list_upscalers(models))
    monkeypatch.setattr(faces, "ultralytics_available", lambda: True)
    assert faces.list_detectors(models) in (["mediapipe", "haar"], ["haar"])  # no linked model file
    assert find_taesd(models / "VAE-approx", "sd1") is None and find_taesd(models / "VAE-approx", "sdxl") is None
    assert clean(service.presets) and clean(p.source for p in service.presets.values())


def test_no_rest_listing_shows_a_link_out(http):
    for route in ("sd-models", "sd-vae", "loras", "embeddings", "upscalers"):
        r = http.get(f"{API}/{route}")
        assert r.status_code == 200, (route, r.text)
        assert clean([r.text]), (route, r.text)
    assert [m["model_name"] for m in http.get(f"{API}/sd-models").json()] == ["alpha"]
    assert {v["model_name"] for v in http.get(f"{API}/sd-vae").json()} == {"inlink.safetensors", "soft.safetensors"}
    assert sorted(x["name"] for x in http.get(f"{API}/loras").json()) == ["deep", "deep"]
    assert sorted(http.get(f"{API}/embeddings").json()["loaded"]) == ["mine1", "mine2"]


# ---- links out: never loaded ---------------------------------------------------------------------

def test_naming_a_link_out_is_refused_and_reads_nothing(service, tree, monkeypatch):
    models = tree["models"]
    monkeypatch.setattr(faces, "ultralytics_available", lambda: True)
    with no_reads(tree["outside"]):
        for name in ("escape", "escape.safetensors", "escpipe", "escdir/inner", "escdir/inner.safetensors"):
            refused(lambda: service.select_model(name), "sd_model_checkpoint")
        for name in ("escape.safetensors", "escape", "escpipe", "escdir/inner.safetensors", "mixed"):
            refused(lambda: gen(service, sd_vae=name), "sd_vae")
        for name in ("escape", "escpipe", "escdir/inner", "escape.safetensors"):
            refused(lambda: gen(service, controlnet_units=[unit(name)]), "controlnet_units")
        # A linked-out annotator file is never read: without MediaPipe the unit is refused naming
        # the file it needs; with it, MediaPipe draws the pose instead.
        if mediapipe_models.unavailable():
            message = refused(lambda: gen(service, controlnet_units=[unit("tiny-cn", "openpose")]),
                              "controlnet_units")
            assert "needs body_pose_model.pth" in message
        else:
            assert gen(service, controlnet_units=[unit("tiny-cn", "openpose")]).images
        refused(lambda: gen(service, ip_adapters=[dict(model="escape", image=picture())]), "ip_adapters")
        with pytest.raises(UserError):
            ipadapter.find_encoder(models / "ipadapter", "escape", "hidden_size", 7)
        for name in ("escape", "escape.pth", "escdir/inner"):
            with pytest.raises(UserError):
                resolve_model_file(name, models)
            with pytest.raises(UserError):
                get_upscaler(name, models)
        for name in ("yunet", "yolo:escape", "yolo:escdir/inner"):
            with pytest.raises(UserError):
                faces.make_detector(name, models)

        r = gen(service, prompt="portrait <lora:escape:1> <lora:escdir/inner:1>, escape1 escape2 inner")
    assert any("'escape' was not found" in w for w in r.warnings), r.warnings
    assert any("'escdir/inner' was not found" in w for w in r.warnings), r.warnings
    info = parse_infotext(r.infotexts[0])
    assert "Lora hashes" not in info and "TI hashes" not in info
    assert not any("mbedding" in w for w in r.warnings), r.warnings


def test_rest_requests_naming_a_link_out_are_4xx_naming_the_field(http, tree):
    with no_reads(tree["outside"]):
        for name in ("escape", "escpipe", "escdir/inner"):
            r = http.post(f"{API}/options", json={"sd_model_checkpoint": name})
            assert 400 <= r.status_code < 500 and r.json()["field"] == "sd_model_checkpoint", r.text
        for name in ("escape.safetensors", "escpipe", "mixed"):
            r = http.post(f"{API}/txt2img", json={**BASE, "override_settings": {"sd_vae": name}})
            assert 400 <= r.status_code < 500 and r.json()["field"] == "override_settings.sd_vae", r.text


def test_controlnet_name_never_resolves_against_the_working_directory(service, tree, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    (cwd / "x").mkdir(parents=True)
    shutil.copytree(tree["outside"] / "cn-folder", cwd / "x" / "y")
    shutil.copy(tree["outside"] / "cn.safetensors", cwd / "x" / "y.safetensors")
    monkeypatch.chdir(cwd)
    with no_reads(cwd / "x"):
        for name in ("x/y", "x/y.safetensors", "./x/y", "x/y [abcdef12]"):
            refused(lambda: gen(service, controlnet_units=[unit(name)]), "controlnet_units")


def test_safety_checker_folder_with_a_file_linking_out_is_refused(tree, tmp_path):
    models = tmp_path / "models"
    (models / "safety_checker").mkdir(parents=True)
    (models / "safety_checker" / "config.json").write_text("{}")
    link(models / "safety_checker" / "model.safetensors", tree["outside"] / "junk.bin")
    with no_reads(tree["outside"]), pytest.raises(SystemExit, match="links outside"):
        load_safety_filter(models)


# ---- damaged embeddings --------------------------------------------------------------------------

def _damaged(kind: str) -> bytes:
    good = io.BytesIO()
    if kind == "wrong dict":
        torch.save({"foo": 1, "bar": "baz"}, good)
        return good.getvalue()
    if kind == "random bytes":
        return np.random.default_rng(3).integers(0, 256, 512, dtype=np.uint8).tobytes()
    legacy = kind == "truncated legacy .pt"
    torch.save({"string_to_param": {"*": torch.ones(2, 32)}}, good, _use_new_zipfile_serialization=not legacy)
    data = good.getvalue()
    return data[:30] if legacy else data[: len(data) // 2]


@pytest.mark.parametrize("kind", ["truncated zip", "truncated legacy .pt", "random bytes", "wrong dict"])
def test_damaged_embedding_is_a_warning_only_where_its_name_is_a_word(http, tree, kind):
    art = tree["work"] / "embeddings" / "art.pt"
    art.write_bytes(_damaged(kind))
    try:
        r = http.get(f"{API}/embeddings")
        assert r.status_code == 200, r.text
        assert "art" not in r.json()["loaded"] and sorted(r.json()["loaded"]) == ["mine1", "mine2"]
        for prompt in ("artist", "heart", "party", "(artistic:1.2) portrait, <lora:art:1>"):
            r = http.post(f"{API}/txt2img", json={**BASE, "prompt": prompt})
            assert r.status_code == 200, (prompt, r.text)
            assert not any("art.pt" in w for w in json.loads(r.json()["info"])["warnings"]), prompt
        for prompt in ("art", "portrait, (art:1.2)"):
            r = http.post(f"{API}/txt2img", json={**BASE, "negative_prompt": prompt})
            assert r.status_code == 200, (prompt, r.text)
            assert any("art.pt" in w for w in json.loads(r.json()["info"])["warnings"]), r.json()["info"]
    finally:
        art.unlink()


def test_damaged_embedding_in_a_batch_warns_only_its_own_request(service, tree):
    art = tree["work"] / "embeddings" / "art.pt"
    art.write_bytes(_damaged("truncated legacy .pt"))
    try:
        reqs = [service.request({**BASE, "prompt": p}) for p in ("artist", "art portrait")]
        plain, uses = service.manager.generate_many([(r, Job()) for r in reqs])
    finally:
        art.unlink()
    assert plain.images and uses.images, (plain, uses)
    assert not any("art.pt" in w for w in plain.warnings), plain.warnings
    assert any("art.pt" in w for w in uses.warnings), uses.warnings


def test_link_loops_and_links_inside_are_walked_once(tmp_path):
    from webui.models.model_files import scan

    folder = tmp_path / "Lora"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.safetensors").write_bytes(b"x")
    link(folder / "a" / "again", folder)  # a loop back to the top
    link(folder / "a" / "up", tmp_path)  # the folder above: outside
    link(folder / "b", folder / "a")
    refused_names: list[str] = []
    assert [m.rel for m in scan(folder, (".safetensors",), refused=refused_names)] == ["a/x.safetensors",
                                                                                      "b/x.safetensors"]
    assert sorted(refused_names) == ["a/up", "b/up"]
