"""Identity through every pass: reference images (IP-Adapter) and ControlNet units apply in the
hires pass and in the face pass too, so the face fix never throws the identity away.

The face pass runs on a photo with denoising strength 0 for the base pass, so every changed
pixel comes from the face pass itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from test_controlnet import build_tiny_ip_adapter, cpu_service, edges_image, face_ref, sd1_models_dir
from webui.engine import runner
from webui.engine.extensions import controlnet
from webui.engine.jobs import Job
from webui.engine.stages import hires
from webui.metadata.infotext import parse_infotext

BASE = dict(prompt="portrait of a woman", negative_prompt="blurry", seed=7, steps=3, sampler_name="Euler",
            cfg_scale=7, save_images=False)
FACE = dict(face_detail=True, face_detail_width=64, face_detail_height=64, face_detail_denoising_strength=0.6)


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = sd1_models_dir(tiny_models, tmp_path_factory, "identity-models")
    (root / "ipadapter").mkdir()
    build_tiny_ip_adapter("sd1", root / "ipadapter")
    svc = cpu_service(root, tmp_path_factory)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


def px(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def face_pass(service, photo, **fields):
    req = service.request({**BASE, "init_image": photo, "width": 512, "height": 512, "denoising_strength": 0.0,
                           **FACE, **fields}, "img2img")
    return service.generate(req)


def reference(weight: float) -> list[dict]:
    return [{"model": "tiny-ip-sd1", "image": face_ref(), "weight": weight}]


def test_face_pass_keeps_the_reference_image(service, photo):
    plain = face_pass(service, photo)
    assert "Face detail faces: 1" in plain.infotexts[0]
    assert np.abs(px(plain.images[0]) - px(photo)).max() > 0  # the face pass repainted something
    with_ref = face_pass(service, photo, ip_adapters=reference(1.0))
    zero = face_pass(service, photo, ip_adapters=reference(0.0))
    assert np.abs(px(with_ref.images[0]) - px(plain.images[0])).mean() > 0.05  # the reference reached the face
    assert np.abs(px(zero.images[0]) - px(plain.images[0])).max() <= 1  # weight 0 = no adapter
    info = parse_infotext(with_ref.infotexts[0])
    assert info["IP-Adapter 0"].startswith("Model: tiny-ip-sd1") and info["Face detail faces"] == "1"


def test_face_pass_sees_the_control_map_of_its_own_crop(service, photo, monkeypatch):
    unit = dict(enabled=True, model="tiny-cn", module="none", image=edges_image((512, 512)))
    plain = face_pass(service, photo)
    calls = []
    real = controlnet.control_image

    def spy(u, width, height, cache, region=None, original_size=None):
        calls.append((width, height, region, original_size))
        return real(u, width, height, cache, region, original_size)

    monkeypatch.setattr(controlnet, "control_image", spy)
    guided = face_pass(service, photo, controlnet_units=[{**unit, "weight": 1.5}])
    zero = face_pass(service, photo, controlnet_units=[{**unit, "weight": 0.0}])
    face_calls = [c for c in calls if c[2] is not None]
    assert face_calls and all(c[:2] == (64, 64) and c[3] == (512, 512) for c in face_calls)
    x0, y0, x1, y1 = face_calls[0][2]
    assert 0 < x1 - x0 < 512 and 0 < y1 - y0 < 512  # the face's crop, not the whole picture
    assert np.abs(px(guided.images[0]) - px(plain.images[0])).mean() > 0.05
    assert np.abs(px(zero.images[0]) - px(plain.images[0])).max() <= 1
    assert "ControlNet 0" in guided.infotexts[0]


def test_hires_pass_keeps_the_reference_image(service):
    """The same first-pass latents into the hires pass: only the pass's reference weight differs."""
    manager = service.manager
    model = manager.ensure_model("alpha")
    out = {}
    for weight in (None, 0.0, 1.0):
        refs = [] if weight is None else reference(weight)
        req = service.request({**BASE, "width": 64, "height": 64, "enable_hr": True, "hr_scale": 1.5,
                               "hr_upscaler": "Lanczos", "hr_denoising_strength": 0.7, "hr_second_pass_steps": 2,
                               "ip_adapters": refs})
        ctx = runner.new_context(manager, model, [req], [Job()])
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.3
        out[weight] = hires.run(ctx, latents, [3])[0]
    assert out[None].size == (96, 96)
    assert np.abs(px(out[None]) - px(out[0.0])).max() <= 1
    assert np.abs(px(out[None]) - px(out[1.0])).mean() > 0.05
