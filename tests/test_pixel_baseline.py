"""Same seed, same pixels, across refactors: every tab and feature combination on the tiny models
gives the image recorded in tests/data/pixel_baseline.json.

The redesign of the engine moves code, not pictures: any change here is a behaviour change and
must be explained in its commit. After an intended change of pictures, record again with
`RECORD_PIXEL_BASELINE=1 python3 -m pytest tests/test_pixel_baseline.py` and say why in the commit.
The hashes hold for the library versions pinned in requirements-dev.txt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from test_controlnet import build_tiny_ip_adapter, cpu_service, edges_image, face_ref, sd1_models_dir
from webui.engine.jobs import Job

BASELINE = Path(__file__).parent / "data" / "pixel_baseline.json"
RECORD = os.environ.get("RECORD_PIXEL_BASELINE") == "1"
BASE = dict(prompt="portrait of a woman, (red hair:1.2)", negative_prompt="blurry", seed=4242, steps=3,
            width=64, height=64, sampler_name="Euler", cfg_scale=7, save_images=False)
FACE = dict(face_detail_width=64, face_detail_height=64, face_detail_denoising_strength=0.6)
UNIT = dict(enabled=True, model="tiny-cn", module="none", weight=1.0)
IP = dict(model="tiny-ip-sd1", weight=0.8)


def _init() -> Image.Image:
    return Image.fromarray(skdata.astronaut()).resize((64, 64), Image.LANCZOS)


def _mask() -> Image.Image:
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (16, 8, 48, 40))
    return m


# name -> (task, fields). Images are built when the case runs (fresh objects every time).
CASES = {
    "txt2img": ("txt2img", {}),
    "txt2img-batch2-dpmpp": ("txt2img", dict(batch_size=2, sampler_name="DPM++ 2M", scheduler="Karras")),
    "img2img": ("img2img", dict(init_image=_init, denoising_strength=0.6)),
    "inpaint": ("inpaint", dict(init_image=_init, mask=_mask, denoising_strength=0.8, mask_blur=2)),
    "inpaint-only-masked": ("inpaint", dict(init_image=_init, mask=_mask, inpaint_full_res=True,
                                            denoising_strength=0.8, sd_model_checkpoint="painter")),
    "hires-latent": ("txt2img", dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.5,
                                     hr_second_pass_steps=2)),
    "hires-lanczos": ("txt2img", dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", denoising_strength=0.5,
                                      hr_second_pass_steps=2)),
    "face-pass": ("img2img", dict(init_image=lambda: Image.fromarray(skdata.astronaut()), width=512, height=512,
                                  denoising_strength=0.0, face_detail=True, face_detail_prompt="smiling face",
                                  face_detail_detector="haar", **FACE)),
    "lora": ("txt2img", dict(prompt="portrait of a woman <lora:face:0.8>")),
    "controlnet": ("txt2img", dict(controlnet_units=lambda: [{**UNIT, "image": edges_image()}])),
    "ip-adapter": ("txt2img", dict(ip_adapters=lambda: [{**IP, "image": face_ref()}])),
    "all-three": ("txt2img", dict(prompt="portrait of a woman <lora:face:0.8>",
                                  controlnet_units=lambda: [{**UNIT, "image": edges_image()}],
                                  ip_adapters=lambda: [{**IP, "image": face_ref()}])),
    "controlnet-hires": ("txt2img", dict(controlnet_units=lambda: [{**UNIT, "image": edges_image()}],
                                         enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.5,
                                         hr_second_pass_steps=2)),
}


def _fields(spec: dict) -> dict:
    return {k: (v() if callable(v) else v) for k, v in {**BASE, **spec}.items()}


def _hash(img: Image.Image) -> str:
    arr = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    return hashlib.sha256(arr.tobytes() + repr(arr.shape).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def service(tiny_models, tiny_loras, tmp_path_factory):
    root = sd1_models_dir(tiny_models, tmp_path_factory, "baseline-models")
    shutil.copy(tiny_models["sd1-inpaint"].file, root / "Stable-diffusion" / "painter.safetensors")
    (root / "Lora").mkdir()
    shutil.copy(tiny_loras["face"][0], root / "Lora" / "face.safetensors")
    (root / "ipadapter").mkdir()
    build_tiny_ip_adapter("sd1", root / "ipadapter")
    svc = cpu_service(root, tmp_path_factory)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def recorded():
    got: dict[str, list[str]] = {}
    yield got
    if RECORD:
        BASELINE.parent.mkdir(exist_ok=True)
        old = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
        BASELINE.write_text(json.dumps({**old, **got}, indent=1, sort_keys=True) + "\n")


def _expect(name: str, hashes: list[str], recorded: dict) -> None:
    recorded[name] = hashes
    if RECORD:
        return
    want = json.loads(BASELINE.read_text()).get(name)
    assert want is not None, f"no baseline for {name}: record it (see the module docstring)"
    assert hashes == want, f"{name}: the pixels changed"


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_pixels_as_recorded(service, recorded, name):
    task, spec = CASES[name]
    fields = _fields(spec)
    fields.setdefault("sd_model_checkpoint", "alpha")
    result = service.generate(service.request(fields, task))
    assert result.images and not result.interrupted
    _expect(name, [_hash(img) for img in result.images], recorded)


def test_four_merged_requests_give_the_recorded_pixels(service, recorded):
    reqs = [service.request(_fields(dict(sd_model_checkpoint="alpha", seed=100 + i, prompt=f"portrait {i}")))
            for i in range(4)]
    before = service.queue.batches_run
    with service.queue.hold():
        entries = [service.queue.submit(r, Job(owner=f"user{i}")) for i, r in enumerate(reqs)]
    results = [e.wait() for e in entries]
    assert service.queue.batches_run == before + 1      # one merged UNet batch
    _expect("batched-4", [_hash(r.images[0]) for r in results], recorded)
