"""Hires fix on the tiny SD1 model: sizes, A1111 infotext keys, seeds, latent and pixel
upscalers (including a tiny ESRGAN file through the real loading code), pixel-limit refusal
and the tiled VAE switch."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from webui.engine import denoise
from webui.engine.stages import hires
from webui.errors import UserError
from webui.metadata.infotext import infotext_to_fields, parse_infotext
from webui.serving.service import Service
from webui.settings import Limits, Settings

if importlib.util.find_spec("spandrel") is None:  # loaded through webui.models.upscalers (torchvision-free)
    pytest.skip("spandrel is not installed", allow_module_level=True)
from test_upscalers import rrdbnet_state_dict  # noqa: E402  (the same tiny ESRGAN fixture)


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hires-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    esrgan = root / "ESRGAN"
    esrgan.mkdir()
    torch.save(rrdbnet_state_dict(), esrgan / "4x-Tiny.pth")
    (esrgan / "NotAModel.pth").write_text("this is a text file, not weights\n")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    s = Settings(models_dir=models_dir, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu")
    return Service.create(s)


def hr(svc, **fields):
    base = dict(prompt="portrait of an old sailor", negative_prompt="blurry", seed=1234, steps=3, width=64,
                height=64, sampler_name="Euler", enable_hr=True, hr_scale=2, hr_upscaler="Latent",
                denoising_strength=0.6, save_images=False)
    base.update(fields)
    return svc.generate(svc.request(base, "txt2img"))


def test_latent_hires_size_infotext_and_seed(service):
    a = hr(service, hr_second_pass_steps=2)
    assert a.images[0].size == (128, 128)
    info = a.infotexts[0]
    for key in ("Size: 64x64", "Denoising strength: 0.6", "Hires upscale: 2", "Hires steps: 2",
                "Hires upscaler: Latent", "Seed: 1234"):
        assert key in info, info
    assert "hires denoise" in a.timings and "base" in a.memory and "hires" in a.memory
    b = hr(service, hr_second_pass_steps=2)
    assert np.array_equal(px(a.images[0]), px(b.images[0]))
    # The infotext read back asks for the same picture.
    fields = infotext_to_fields(parse_infotext(info))
    assert fields["enable_hr"] and fields["hr_scale"] == 2 and fields["hr_upscaler"] == "Latent"
    again = service.generate(service.request({**fields, "sd_model_checkpoint": None, "save_images": False}))
    assert np.array_equal(px(again.images[0]), px(a.images[0]))


def test_each_image_of_a_batch_keeps_its_seed(service):
    batch = hr(service, seed=42, batch_size=2)
    assert batch.seeds == [42, 43] and all(i.size == (128, 128) for i in batch.images)
    alone = hr(service, seed=43)
    assert np.abs(px(alone.images[0]) - px(batch.images[1])).max() <= 2
    assert np.abs(px(batch.images[0]) - px(batch.images[1])).max() > 10


def test_lanczos_and_latent_both_work_and_differ(service):
    latent = hr(service, hr_upscaler="Latent (bicubic antialiased)")
    lanczos = hr(service, hr_upscaler="Lanczos")
    assert latent.images[0].size == lanczos.images[0].size == (128, 128)
    assert "Hires upscaler: Lanczos" in lanczos.infotexts[0]
    assert np.abs(px(latent.images[0]) - px(lanczos.images[0])).max() > 10


def test_zero_denoising_returns_the_upscaled_first_pass(service):
    base = service.generate(service.request(dict(prompt="portrait of an old sailor", negative_prompt="blurry",
                                                 seed=1234, steps=3, width=64, height=64, sampler_name="Euler",
                                                 save_images=False)))
    up = hr(service, hr_upscaler="Lanczos", denoising_strength=0.0)
    expected = base.images[0].resize((128, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(px(up.images[0]), px(expected))


def test_resize_to_size_covers_then_crops(service):
    r = hr(service, hr_resize_x=96, hr_resize_y=128, hr_upscaler="Lanczos")
    assert r.images[0].size == (96, 128)
    assert "Hires resize: 96x128" in r.infotexts[0] and "Hires upscale:" not in r.infotexts[0]
    assert hires.target_size(64, 64, 2, 96, 128) == ((128, 128), (96, 128))
    assert hires.target_size(64, 96, 2, 100, 0) == ((96, 144), (96, 144))  # one side: keep aspect, multiple of 8
    assert hires.target_size(512, 768, 1.5) == ((768, 1152), (768, 1152))


def test_tiny_esrgan_file_upscales_in_hires_fix(service):
    r = hr(service, hr_upscaler="4x-Tiny", hr_scale=1.5)
    assert r.images[0].size == (96, 96)
    assert "Hires upscaler: 4x-Tiny" in r.infotexts[0]


def test_bad_esrgan_file_and_unknown_upscaler_are_user_errors(service):
    with pytest.raises(UserError, match="NotAModel"):
        hr(service, hr_upscaler="NotAModel")
    with pytest.raises(UserError, match="not found"):
        hr(service, hr_upscaler="NoSuchUpscaler")
    assert hr(service).images  # still serving


def test_hires_prompt_and_sampler(service):
    plain = hr(service)
    own = hr(service, hr_prompt="portrait of a young sailor, detailed skin", hr_sampler_name="Euler a",
             hr_scheduler="Karras")
    info = own.infotexts[0]
    assert 'Hires prompt: "portrait of a young sailor, detailed skin"' in info
    assert "Hires sampler: Euler a" in info and "Hires schedule type: Karras" in info
    assert np.abs(px(plain.images[0]) - px(own.images[0])).max() > 0
    fields = infotext_to_fields(parse_infotext(info))
    assert fields["hr_prompt"] == "portrait of a young sailor, detailed skin"
    assert fields["hr_sampler_name"] == "Euler a"
    with pytest.raises(UserError) as e:
        service.request(dict(enable_hr=True, hr_sampler_name="Warp Drive"))
    assert e.value.field == "hr_sampler_name"


def test_pixel_limit_refused_at_the_request_edge(models_dir, tmp_path):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu",
                                  limits=Limits(max_pixels=100 * 100)), load_model=False)
    with pytest.raises(UserError, match="hires fix output would be 128x128") as e:
        svc.request(dict(width=64, height=64, enable_hr=True, hr_scale=2))
    assert e.value.field == "hr_scale"
    with pytest.raises(UserError) as e:
        svc.request(dict(width=64, height=64, enable_hr=True, hr_resize_x=128))
    assert e.value.field == "hr_resize_x"
    assert svc.request(dict(width=64, height=64, enable_hr=False, hr_scale=2)).width == 64  # hires off: fine


def test_tiled_vae_for_large_sizes_is_switched_on_only_for_the_call(service, monkeypatch):
    vae = service.manager.active.pipe.vae
    plain = hr(service, hr_upscaler="Lanczos")
    monkeypatch.setattr(denoise, "TILED_VAE_PIXELS", 64 * 64)  # make the 128x128 pass "large"
    calls = []
    real = type(vae).tiled_decode

    def spy(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(type(vae), "tiled_decode", spy)
    vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8  # tiles smaller than the image
    try:
        tiled = hr(service, hr_upscaler="Lanczos")
    finally:
        vae.tile_sample_min_size, vae.tile_latent_min_size = 512, 64
    assert calls, "the large decode did not go through the tiled path"
    assert not vae.use_tiling and not vae.use_slicing  # restored for the next request
    assert tiled.images[0].size == plain.images[0].size
    # Tiling blends tile seams, so pixels move a little, not wholesale.
    assert np.abs(px(tiled.images[0]).astype(float) - px(plain.images[0])).mean() < 40
