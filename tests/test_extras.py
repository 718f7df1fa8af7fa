"""The Extras tab's work: upscale any image (Lanczos, a tiny ESRGAN file through the same
loading code as hires fix), run the face pass on an upload, save with infotext, refuse what
would break the pixel limit."""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from webui.serving import extras
from webui.errors import UserError
from webui.metadata.image_meta import read_infotext, save_png
from webui.serving.service import Service
from webui.settings import Limits, Settings

if importlib.util.find_spec("spandrel") is None:  # loaded through webui.models.upscalers (torchvision-free)
    pytest.skip("spandrel is not installed", allow_module_level=True)
from test_upscalers import rrdbnet_state_dict  # noqa: E402  (the same tiny ESRGAN fixture)

skdata = pytest.importorskip("skimage.data")

SOURCE_INFO = "a portrait, oil\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, Seed: 5, Size: 64x48, Version: v1"


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("extras-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    (root / "ESRGAN").mkdir()
    torch.save(rrdbnet_state_dict(), root / "ESRGAN" / "4x-Tiny.pth")
    (root / "ESRGAN" / "Broken.pth").write_bytes(b"\x00not a model")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    return Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu"))


@pytest.fixture()
def source(tmp_path) -> Image.Image:
    """A PNG upload carrying A1111 parameters, opened as the UI does."""
    rng = np.random.default_rng(0)
    path = save_png(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)), tmp_path / "s.png",
                    SOURCE_INFO)
    return Image.open(path)


def test_lanczos_upscale_saved_with_source_infotext(service, source):
    r = extras.upscale(service, source, "Lanczos", scale=2)
    assert r.image.size == (128, 96)
    assert r.path.parent == service.settings.outputs_dir / "extras-images" / dt.date.today().isoformat()
    assert r.path.name.endswith(".png") and r.path.name[:5].isdigit()
    text, _ = read_infotext(r.path)
    assert text.startswith("a portrait, oil\nNegative prompt: blurry\n")
    assert "Seed: 5" in text and "Postprocess upscale by: 2" in text and "Postprocess upscaler: Lanczos" in text
    assert np.array_equal(px(Image.open(r.path).convert("RGB")), px(r.image))
    second = extras.upscale(service, source, "Nearest", scale=1.5)
    assert int(second.path.name[:5]) == int(r.path.name[:5]) + 1


def test_tiny_esrgan_upscales_to_a_size(service, source):
    r = extras.upscale(service, source, "4x-Tiny", width=100, height=80)
    assert r.image.size == (100, 80)
    assert "Postprocess upscale to: 100x80" in r.infotext and "Postprocess upscaler: 4x-Tiny" in r.infotext
    keep = extras.upscale(service, source, "4x-Tiny", width=128, save_image=False)
    assert keep.image.size == (128, 96) and keep.path is None  # aspect kept


def test_bad_inputs_are_clear_errors(service, source, models_dir, tmp_path):
    with pytest.raises(UserError, match="Broken.pth"):
        extras.upscale(service, source, "Broken", scale=2)
    with pytest.raises(UserError, match="not found"):
        extras.upscale(service, source, "Missing", scale=2)
    with pytest.raises(UserError, match="latent"):
        extras.upscale(service, source, "Latent", scale=2)
    with pytest.raises(UserError, match="upload an image"):
        extras.upscale(service, None, "Lanczos", scale=2)
    small = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu",
                                    limits=Limits(max_upload_pixels=100 * 100)), load_model=False)
    with pytest.raises(UserError, match="128x96"):
        extras.upscale(small, source, "Lanczos", scale=2)
    assert extras.upscale(service, source, "Lanczos", scale=1.25).image.size == (80, 60)  # still serving


def test_face_detail_on_an_upload(service):
    photo = Image.fromarray(skdata.astronaut())
    r = extras.face_detail(service, photo, dict(prompt="portrait photo", seed=11, steps=3, sampler_name="Euler",
                                                face_detail_width=64, face_detail_height=64))
    assert r.image.size == photo.size
    assert np.abs(px(r.image) - px(photo)).max() > 0
    text, _ = read_infotext(r.path)
    assert "Face detail faces: 1" in text and "Seed: 11" in text and "Size: 512x512" in text
    assert r.path.parent.parent.name == "extras-images"


def test_face_detail_keeps_the_source_infotext_and_no_face_is_a_warning(service, source):
    r = extras.face_detail(service, source, dict(prompt="x", seed=1, steps=2, face_detail_width=64,
                                                 face_detail_height=64))
    assert np.array_equal(px(r.image), px(source.convert("RGB")))
    assert any("no face found" in w for w in r.warnings)
    assert r.infotext.startswith("a portrait, oil\n") and "Face detail faces: 0" in r.infotext


def wait_for(condition, seconds=20.0):
    import time

    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_extras_run_on_the_gpu_worker_in_turn(service, source, monkeypatch):
    """Upscalers and the face pass run on the GPU queue's one worker thread, after what was
    queued before them: compiled CUDA graphs replay only on the thread that recorded them."""
    import threading

    seen = []
    for name in ("upscale_image", "detail_faces"):
        real = getattr(service.manager, name)

        def spy(*a, _real=real, _name=name, **kw):
            seen.append((_name, threading.current_thread().name))
            return _real(*a, **kw)
        monkeypatch.setattr(service.manager, name, spy)
    with service.queue.hold():  # a generation waits first; the Extras calls queue behind it
        gen = threading.Thread(target=service.generate, args=(service.request(dict(prompt="x", steps=1, width=64,
                                                                                      height=64, save_images=False)),))
        gen.start()
        wait_for(lambda: service.queue.pending() == 1)
        ups = threading.Thread(target=extras.upscale, args=(service, source, "4x-Tiny"),
                               kwargs=dict(scale=2, save_image=False))
        ups.start()
        wait_for(lambda: service.queue.pending() == 2)  # the upscale queued behind the generation
        assert seen == []  # nothing runs while the queue is held
    gen.join()
    ups.join()
    extras.face_detail(service, source, dict(prompt="x", seed=1, steps=1), save_image=False)
    assert seen == [("upscale_image", "gpu-queue"), ("detail_faces", "gpu-queue")]


def test_extras_tab_is_registered_and_builds(service):
    from webui.ui import TABS, build_ui
    assert "extras" in [t[0] for t in TABS]
    demo = build_ui(service)
    names = {getattr(fn, "api_name", None) for fn in demo.fns.values()}
    assert {"txt2img", "extras_upscale", "extras_face_detail"} <= names
