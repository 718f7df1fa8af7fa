"""Reliability and security: every limit, path safety for every kind of name, pickle files that
carry code, injected faults mid-denoise, a full disk, corrupt uploads, and a running server that
must not hand out files outside the outputs folder."""

from __future__ import annotations

import base64
import errno
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from webui.errors import UserError
from webui.imaging.images import decode_base64_image, open_upload
from webui.engine.jobs import Job
from webui.models.model_files import resolve as resolve_model
from webui.serving.outputs import resolve_output, save_result
from webui.serving.service import Service
from webui.settings import LIMIT_FLAGS, Limits, Settings, settings_from_args


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def png_bytes(w=64, h=64, color=(200, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    out = tmp_path_factory.mktemp("outputs")
    return Service.create(Settings(models_dir=models_dir, outputs_dir=out, device="cpu"))


def fields(**kw):
    base = dict(prompt="portrait of a lighthouse keeper", negative_prompt="blurry", seed=1234, steps=3,
                width=64, height=64, sampler_name="Euler")
    base.update(kw)
    return base


# ---- limits ----------------------------------------------------------------------------------

SMALL = Limits(max_width=256, max_height=128, max_pixels=128 * 128, max_steps=10, max_batch_size=2, max_n_iter=3,
               max_prompt_chars=50, max_upload_bytes=4096, max_upload_pixels=100 * 100)


@pytest.mark.parametrize("over, field, limit_text", [
    (dict(width=264), "width", "256"),
    (dict(height=136), "height", "128"),
    (dict(width=256, height=128), "width", str(128 * 128)),
    (dict(steps=11), "steps", "10"),
    (dict(hr_second_pass_steps=11), "hr_second_pass_steps", "10"),
    (dict(batch_size=3), "batch_size", "2"),
    (dict(n_iter=4), "n_iter", "3"),
    (dict(prompt="x" * 51), "prompt", "50"),
    (dict(negative_prompt="x" * 51), "negative_prompt", "50"),
])
def test_each_request_limit_is_enforced_with_a_message(over, field, limit_text):
    from webui.request import build_request
    ok = build_request(fields(width=128, height=128, steps=10, batch_size=2, n_iter=3, prompt="x" * 50), SMALL)
    assert ok.image_count == 6  # exactly at every limit is fine
    with pytest.raises(UserError) as e:
        build_request(fields(**over), SMALL)
    assert e.value.field == field
    assert limit_text in str(e.value)


def test_upload_pixel_limit_same_message_for_decoded_and_base64_uploads():
    from webui.request import build_request
    big = Image.new("RGB", (101, 100))
    with pytest.raises(UserError) as from_ui:
        build_request(fields(init_image=big), SMALL, "img2img")
    buf = io.BytesIO()
    big.save(buf, "PNG")
    with pytest.raises(UserError) as from_api:
        decode_base64_image(b64(buf.getvalue()), "init_images", SMALL)
    assert str(from_ui.value) == str(from_api.value)
    assert "10100 pixels" in str(from_api.value) and "limit is 10000" in str(from_api.value)
    assert from_ui.value.field == from_api.value.field == "init_images"
    # the mask is checked as well
    with pytest.raises(UserError, match="The mask is 101x100"):
        build_request(fields(init_image=Image.new("RGB", (100, 100)), mask=Image.new("L", (101, 100))),
                      SMALL, "inpaint")


def test_upload_byte_limit_before_decoding(tmp_path):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    data = buf.getvalue()
    assert len(data) > SMALL.max_upload_bytes
    with pytest.raises(UserError, match="upload limit is 4.0 KB") as e:
        decode_base64_image("data:image/png;base64," + b64(data), "init_images", SMALL)
    assert e.value.field == "init_images"
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(UserError, match="upload limit is 4.0 KB"):
        open_upload(str(path), SMALL, "init_images")
    assert open_upload(str(path), Limits(), "init_images").size == (64, 64)


def test_decompression_bomb_is_refused_from_the_header():
    # A PNG whose header claims 9000x9000 (under Pillow's own bomb check): refused by the pixel
    # limit before any pixel is decoded.
    import struct
    import zlib
    raw = png_bytes(1, 1)
    ihdr = struct.pack(">IIBBBBB", 9000, 9000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]
    with pytest.raises(UserError, match="9000x9000"):
        decode_base64_image(b64(bomb), "init_images", Limits())


@pytest.mark.parametrize("data", [
    b"", b"hello, not an image", png_bytes()[:60], b"PK\x03\x04" + b"\x00" * 200, b"GIF89a" + b"\x00" * 10,
])
def test_corrupt_uploads_are_rejected(data):
    with pytest.raises(UserError) as e:
        decode_base64_image(b64(data) or "AAAA", "init_images", Limits())
    assert e.value.field == "init_images"


def test_limits_from_flags_and_environment(monkeypatch):
    assert settings_from_args(["--max-steps", "40", "--max-batch-count", "2"]).limits.max_steps == 40
    monkeypatch.setenv("WEBUI_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("WEBUI_MAX_WIDTH", "1024")
    lim = settings_from_args([]).limits
    assert (lim.max_upload_bytes, lim.max_width) == (1234, 1024)
    assert settings_from_args(["--max-width", "768"]).limits.max_width == 768  # the flag wins
    monkeypatch.setenv("WEBUI_MAX_STEPS", "lots")
    with pytest.raises(SystemExit):
        settings_from_args([])
    monkeypatch.delenv("WEBUI_MAX_STEPS")
    with pytest.raises(SystemExit):
        settings_from_args(["--max-pixels", "0"])
    # every Limits field has a flag
    assert set(LIMIT_FLAGS) == {f for f in Limits.__dataclass_fields__}


def test_gradio_upload_size_and_allowed_paths_follow_the_settings(tmp_path):
    from webui.ui import launch_kwargs
    svc = Service.create(Settings(models_dir=tmp_path / "m", outputs_dir=tmp_path / "out",
                                  limits=Limits(max_upload_bytes=777)), load_model=False)
    kw = launch_kwargs(svc)
    assert kw["max_file_size"] == 777
    assert kw["allowed_paths"] == [str((tmp_path / "out").resolve())]


def test_ui_shows_the_same_message_as_the_api(service):
    import gradio as gr
    from webui.ui.common import run_generation
    bad = fields(steps=1000)
    with pytest.raises(UserError) as api:
        service.request(bad)
    with pytest.raises(gr.Error) as ui:
        list(run_generation(service, bad, "txt2img", None, lambda *a, **k: None))  # a generator: run it
    assert ui.value.message == str(api.value)


# ---- path safety -------------------------------------------------------------------------------

TRAVERSAL = ["../secret", "../../etc/passwd", "/etc/passwd", "sub/../../secret", "..", "\x00x"]


@pytest.fixture()
def model_tree(tmp_path):
    """models/<Kind>/ with one real file, a link inside (fine) and a link out (refused)."""
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"outside")
    root = tmp_path / "models"
    for kind in ("Lora", "VAE", "embeddings", "ESRGAN"):
        d = root / kind
        d.mkdir(parents=True)
        (d / "good.safetensors").write_bytes(b"x")
        (d / "good.pt").write_bytes(b"x")
        (d / "inner.safetensors").symlink_to(d / "good.safetensors")
        (d / "escape.safetensors").symlink_to(outside)
    return root


def find_model_file(folder, name, exts, what, field=None) -> Path:
    return resolve_model(folder, name, exts, what=what, field=field).path.resolve()


@pytest.mark.parametrize("kind, exts", [("Lora", (".safetensors", ".pt")), ("VAE", (".safetensors", ".pt")),
                                        ("embeddings", (".safetensors", ".pt"))])
def test_lora_vae_embedding_names_stay_in_their_folder(model_tree, kind, exts):
    folder = model_tree / kind
    assert find_model_file(folder, "good", exts, kind) == (folder / "good.safetensors").resolve()  # preferred
    assert find_model_file(folder, "good.pt", exts, kind) == (folder / "good.pt").resolve()
    assert find_model_file(folder, "good.safetensors [0123abcd]", exts, kind).name == "good.safetensors"
    assert find_model_file(folder, "inner", exts, kind) == (folder / "good.safetensors").resolve()
    for name in TRAVERSAL + ["escape", "escape.safetensors", str(folder / "good.safetensors")]:
        with pytest.raises(UserError):
            find_model_file(folder, name, exts, kind, field="x")


def test_embedding_folder_skips_links_out(tmp_path):
    from safetensors.torch import save_file
    from webui.models.embeddings import load_embeddings_dir
    folder = tmp_path / "embeddings"
    folder.mkdir()
    save_file({"emb_params": torch.ones(2, 32)}, str(folder / "good.safetensors"))
    save_file({"emb_params": torch.ones(2, 32)}, str(tmp_path / "outside.safetensors"))
    (folder / "escape.safetensors").symlink_to(tmp_path / "outside.safetensors")
    (folder / "inner.safetensors").symlink_to(folder / "good.safetensors")
    found, warnings = load_embeddings_dir(folder)
    assert set(found) == {"good", "inner"}
    assert any("escape" in w and "outside" in w for w in warnings)


def test_upscaler_names_stay_in_their_folder(model_tree):
    from webui.models.upscalers import resolve_model_file
    (model_tree / "ESRGAN" / "good.pt").unlink()
    assert resolve_model_file("good", model_tree).name == "good.safetensors"
    for name in TRAVERSAL + ["escape"]:
        with pytest.raises(UserError):
            resolve_model_file(name, model_tree)


def test_checkpoint_names_stay_in_their_folder(service, models_dir, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(models_dir / "Stable-diffusion" / "alpha.safetensors", outside)
    link = models_dir / "Stable-diffusion" / "escape.safetensors"
    inner = models_dir / "Stable-diffusion" / "inner.safetensors"
    link.symlink_to(outside)
    inner.symlink_to(models_dir / "Stable-diffusion" / "alpha.safetensors")
    try:
        names = [c.name for c in service.catalog.refresh()]
        assert "escape" not in names and "inner" in names
        for name in TRAVERSAL + ["escape", str(outside), "../" + outside.name]:
            with pytest.raises(UserError):
                service.select_model(name)
        assert service.manager.active.ckpt.name == "alpha"
        with pytest.raises(UserError):
            service.generate(service.request(fields(sd_model_checkpoint="../../etc/passwd")))
    finally:
        link.unlink()
        inner.unlink()
        service.catalog.refresh()


def test_preset_names_are_looked_up_not_opened():
    from webui.prompts.preset_files import load_presets
    from webui.prompts.presets import find_preset
    presets, _ = load_presets()
    for name in TRAVERSAL + ["../presets/" + next(iter(presets.values())).id + ".json"]:
        with pytest.raises(UserError):
            find_preset(presets, name)


def test_output_files_stay_in_the_outputs_folder(tmp_path):
    out = tmp_path / "outputs"
    (out / "txt2img-images").mkdir(parents=True)
    (out / "txt2img-images" / "00000-1.png").write_bytes(png_bytes())
    (tmp_path / "private.png").write_bytes(png_bytes())
    (out / "txt2img-images" / "link.png").symlink_to(tmp_path / "private.png")
    assert resolve_output(out, "txt2img-images/00000-1.png").name == "00000-1.png"
    for name in TRAVERSAL + ["../private.png", "txt2img-images/link.png", str(tmp_path / "private.png"),
                             "txt2img-images", "txt2img-images/missing.png"]:
        with pytest.raises(UserError):
            resolve_output(out, name)


def test_running_server_serves_only_the_outputs_folder_and_caps_uploads(models_dir, tmp_path):
    import httpx
    from webui.metadata.image_meta import save_png
    from webui.ui import build_ui, launch_kwargs
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path / "outputs", device="cpu",
                                  limits=Limits(max_upload_bytes=20_000)), load_model=False)
    saved = save_png(Image.new("RGB", (8, 8)), tmp_path / "outputs" / "txt2img-images" / "00000-1.png", "x")
    private = models_dir / "Stable-diffusion" / "alpha.safetensors"
    demo = build_ui(svc)
    demo.queue(default_concurrency_limit=1)
    kw = launch_kwargs(svc)
    kw.update(server_port=None, prevent_thread_lock=True, quiet=True)
    demo.launch(**kw)
    try:
        base = demo.local_url.rstrip("/")
        with httpx.Client(timeout=60) as http:
            assert http.get(f"{base}/gradio_api/file={saved.resolve()}").status_code == 200
            for path in ("/etc/passwd", str(private.resolve()), str(Path("README.md").resolve()),
                         f"{saved.parent.resolve()}/../../../etc/passwd"):
                resp = http.get(f"{base}/gradio_api/file={path}")
                assert resp.status_code in (403, 404), path
                assert b"root:" not in resp.content
            small = http.post(f"{base}/gradio_api/upload", files={"files": ("a.png", png_bytes(), "image/png")})
            assert small.status_code == 200
            big = http.post(f"{base}/gradio_api/upload", files={"files": ("b.png", b"\0" * 30_000, "image/png")})
            assert big.status_code >= 400
    finally:
        demo.close()


# ---- model files that are not what they claim, pickles with code ------------------------------


class _RunsCode:
    """Unpickling this calls open(sentinel, "w"): if the file appears, code ran."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _evil(path: Path, sentinel: Path, legacy: bool = False) -> Path:
    payload = {"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)},
               "string_to_param": {"*": torch.zeros(1, 4)}, "params": {"w": torch.zeros(1)},
               "evil": _RunsCode(sentinel)}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return path


def _loaders(tmp_path):
    from webui.models.checkpoints import load_pipeline, read_shapes
    from webui.models.embeddings import load_embedding
    from webui.models.upscalers import get_upscaler

    def upscaler(path):
        esrgan = tmp_path / "models" / "ESRGAN"
        esrgan.mkdir(parents=True, exist_ok=True)
        target = esrgan / (path.stem + ".pth")
        shutil.copy(path, target)
        return get_upscaler(target.stem, tmp_path / "models")

    loaders = {"checkpoint header": read_shapes, "checkpoint": lambda p: load_pipeline(str(p)),
               "embedding": load_embedding, "upscaler": upscaler}
    try:
        from webui.engine.extensions.lora import read_state_dict
        loaders["lora"] = read_state_dict
    except ImportError:
        pass
    try:
        from webui.models.vae import _read as read_vae
        loaders["vae"] = read_vae
    except ImportError:
        pass
    return loaders


OPTIONAL_LOADERS = ["lora", "vae"]


def _loader(tmp_path, name):
    loaders = _loaders(tmp_path)
    if name not in loaders:
        pytest.skip(f"no {name} loader in this build")
    return loaders[name]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("loader", ["checkpoint header", "checkpoint", "embedding", "upscaler", *OPTIONAL_LOADERS])
def test_pickle_with_code_is_refused_and_never_runs(tmp_path, loader, legacy):
    sentinel = tmp_path / "code-ran"
    suffix = {"embedding": ".pt", "upscaler": ".pth", "lora": ".pt", "vae": ".pt"}.get(loader, ".ckpt")
    path = _evil(tmp_path / f"evil{suffix}", sentinel, legacy)
    with pytest.raises(UserError) as e:
        _loader(tmp_path, loader)(path)
    assert "evil" in str(e.value)
    assert not sentinel.exists()


def test_pickle_checkpoint_refused_through_the_manager(service, models_dir, tmp_path):
    sentinel = tmp_path / "code-ran"
    path = _evil(models_dir / "Stable-diffusion" / "evil.ckpt", sentinel)
    try:
        service.catalog.refresh()
        with pytest.raises(UserError, match="unsafe|code"):
            service.select_model("evil")
        assert not sentinel.exists()
        assert service.manager.active.ckpt.name == "alpha"
    finally:
        path.unlink()
        service.catalog.refresh()


@pytest.mark.parametrize("loader", ["checkpoint header", "embedding", "upscaler", *OPTIONAL_LOADERS])
@pytest.mark.parametrize("content", [png_bytes(), b"<html>404 Not Found</html>", b"\x00" * 64])
def test_file_that_is_not_what_it_claims_is_rejected(tmp_path, loader, content):
    pickled = {"upscaler": ".pth", "checkpoint header": ".ckpt"}.get(loader, ".pt")
    for ext in (".safetensors", pickled):
        path = tmp_path / f"fake{ext}"
        path.write_bytes(content)
        with pytest.raises(UserError) as e:
            _loader(tmp_path, loader)(path)
        assert "fake" in str(e.value)
        path.unlink()


def test_checkpoint_that_fails_in_from_single_file_keeps_the_previous_model(service, models_dir):
    """Headers look like SD1 (family detection passes) but a tensor has the wrong shape."""
    from safetensors.torch import load_file, save_file
    state = load_file(str(models_dir / "Stable-diffusion" / "alpha.safetensors"))
    key = next(k for k in state if k.startswith("first_stage_model.decoder.") and k.endswith("conv_out.weight"))
    state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    bad = models_dir / "Stable-diffusion" / "misshapen.safetensors"
    save_file(state, str(bad))
    try:
        service.catalog.refresh()
        before = service.generate(service.request(fields(save_images=False)))
        with pytest.raises(UserError, match="misshapen"):
            service.select_model("misshapen")
        assert service.manager.active.ckpt.name == "alpha"
        after = service.generate(service.request(fields(save_images=False)))
        assert np.array_equal(px(before.images[0]), px(after.images[0]))
    finally:
        bad.unlink()
        service.catalog.refresh()


# ---- faults during a job -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(service):
    return service.generate(service.request(fields(save_images=False))).images[0]


@pytest.mark.parametrize("after_calls", [0, 2])
def test_injected_out_of_memory_is_reported_and_the_next_job_runs(service, clean, after_calls):
    calls = []
    handle = service.manager.active.pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        service.manager.inject_unet_fault(torch.OutOfMemoryError("CUDA out of memory (injected)"), after_calls)
        with pytest.raises(UserError) as e:
            service.generate(service.request(fields(batch_size=2, save_images=False)))
    finally:
        handle.remove()
    assert len(calls) == after_calls + 1  # it failed mid-denoise, at the UNet call asked for
    assert "ran out of memory" in str(e.value)
    assert "64x64" in str(e.value) and "batch size (2" in str(e.value)
    again = service.generate(service.request(fields(save_images=False)))
    assert np.array_equal(px(again.images[0]), px(clean))


def test_injected_crash_leaves_the_manager_usable(service, clean):
    import gradio as gr
    from webui.ui.common import run_generation
    service.manager.inject_unet_fault(RuntimeError("cuDNN error (injected)"), after_calls=1)
    job = Job()
    with pytest.raises(RuntimeError, match="injected"):
        service.manager.generate(service.request(fields(save_images=False)), job)
    assert job.state == "done"
    # Through the UI: a crash is shown as an error, and the next click works.
    service.manager.inject_unet_fault(RuntimeError("device lost (injected)"))
    with pytest.raises(gr.Error, match="generation failed"):
        list(run_generation(service, fields(save_images=False), "txt2img", None, lambda *a, **k: None))
    again = service.generate(service.request(fields(save_images=False)))
    assert np.array_equal(px(again.images[0]), px(clean))
    assert service.manager.fail_next_unet_call is None


def test_interrupted_job_keeps_finished_images_and_the_next_job_runs(service, clean):
    job = Job()

    def stop_after_first_batch(j):
        if j.image_index == 0 and j.step == 1:
            j.interrupt()

    job.listener = stop_after_first_batch
    r = service.manager.generate(service.request(fields(n_iter=3, save_images=False)), job)
    assert r.interrupted and 0 < len(r.images) < 3
    again = service.generate(service.request(fields(save_images=False)))
    assert np.array_equal(px(again.images[0]), px(clean))


# ---- a full disk -----------------------------------------------------------------------------------


def _write_to_full_disk(image, path, infotext):
    """A real ENOSPC: /dev/full accepts the open and fails the write, as a full disk does."""
    from webui.metadata.image_meta import png_bytes_with_infotext
    with open("/dev/full", "wb") as f:
        f.write(png_bytes_with_infotext(image, infotext))
        f.flush()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_returns_the_images_with_a_warning(service, tmp_path):
    from webui.metadata.image_meta import save_png
    from webui.ui.common import gallery_output
    result = service.manager.generate(service.request(fields(n_iter=2)))
    with pytest.raises(OSError) as probe:
        _write_to_full_disk(result.images[0], tmp_path / "x.png", "")
    assert probe.value.errno == errno.ENOSPC
    save_result(result, tmp_path / "full", write=_write_to_full_disk)
    assert len(result.images) == 2 and result.paths == []
    assert any("disk is full" in w and "not saved" in w for w in result.warnings)

    # The disk fills up after the first image: that one is on disk, the second only in memory.
    written = []

    def fills_up(image, path, infotext):
        if written:
            return _write_to_full_disk(image, path, infotext)
        written.append(save_png(image, path, infotext))

    partial = service.manager.generate(service.request(fields(n_iter=2)))
    save_result(partial, tmp_path / "filling", write=fills_up)
    assert partial.paths == written and partial.paths[0].is_file()
    assert any("1 of 2 images were saved" in w for w in partial.warnings)
    items, _, state = gallery_output(partial)
    assert len(items) == 2 and items[0][0] == str(partial.paths[0])
    assert isinstance(items[1][0], Image.Image) and state["seeds"] == partial.seeds


def test_symlinks_out_of_lora_vae_and_outputs_folders_are_not_listed_or_served(tmp_path):
    """A link placed inside a models/outputs folder that points elsewhere must never be read."""
    from webui.engine.extensions.lora import LoraLibrary
    from webui.ui.history import images_of_date
    from webui.models.vae import VaeLibrary

    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "x.safetensors").write_bytes(b"not ours")
    (secret / "x.png").write_bytes(b"not ours")
    lora_dir, vae_dir = tmp_path / "Lora", tmp_path / "VAE"
    lora_dir.mkdir()
    vae_dir.mkdir()
    (lora_dir / "real.safetensors").write_bytes(b"x")
    (lora_dir / "escape.safetensors").symlink_to(secret / "x.safetensors")
    (vae_dir / "escape.safetensors").symlink_to(secret / "x.safetensors")
    (vae_dir / "escape-dir").symlink_to(secret, target_is_directory=True)
    day = tmp_path / "outputs" / "txt2img-images" / "2026-01-02"
    day.mkdir(parents=True)
    (day / "00000-1.png").write_bytes(b"x")
    (day / "00001-2.png").symlink_to(secret / "x.png")

    assert [f.name for f in LoraLibrary(lora_dir).list()] == ["real"]
    assert LoraLibrary(lora_dir).find("escape") is None
    assert VaeLibrary(vae_dir).list() == []
    assert [p.name for p in images_of_date(tmp_path / "outputs", "2026-01-02")] == ["00000-1.png"]


def test_out_of_memory_in_a_later_batch_keeps_the_finished_images(service, clean):
    import torch
    # n_iter 2 with 3 steps: the UNet's 4th call is the first step of the second batch.
    service.manager.inject_unet_fault(torch.OutOfMemoryError("CUDA out of memory (injected)"), after_calls=3)
    r = service.generate(service.request(fields(n_iter=2)))
    assert len(r.images) == 1 and len(r.paths) == 1  # the first batch's image, saved
    assert np.array_equal(px(r.images[0]), px(clean))
    assert any("ran out of memory" in w and "Kept the 1 image" in w for w in r.warnings)
    again = service.generate(service.request(fields(save_images=False)))
    assert np.array_equal(px(again.images[0]), px(clean))
