"""Two A1111 client libraries from PyPI (webuiapi, sd-backend-client) against a running server:
legacy sampler names and ComfyUI's scheduler names, the listings they parse, png-info,
64-bit seeds, the `infotext` and `include_init_images` body fields and the styles.csv in
A1111's place (the models folder's parent). Tiny offline models, 64x64, 2 steps."""

from __future__ import annotations

import base64
import io
import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from webui.serving.service import Service
from webui.settings import Settings

webuiapi = pytest.importorskip("webuiapi")
sdbc = pytest.importorskip("sd_backend_client")

API = "/sdapi/v1"
SMALL = dict(width=64, height=64, steps=2, cfg_scale=7)


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    a1111 = tmp_path_factory.mktemp("a1111-root")  # an A1111 install: styles.csv beside models/
    (a1111 / "styles.csv").write_text("name,prompt,negative_prompt\nNoir Test,\"{prompt}, film noir\",color\n")
    models = a1111 / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_models["sd1"].file, models / "Stable-diffusion" / "alpha.safetensors")
    (models / "Lora").mkdir()
    save_file({"w": torch.zeros(1)}, str(models / "Lora" / "freckles.safetensors"),
              metadata={"ss_network_dim": "4", "ss_tag_frequency": '{"set": {"freckles": 3}}'})
    settings = Settings(models_dir=models, outputs_dir=tmp_path_factory.mktemp("clients-out"), device="cpu",
                        translator="off")
    return Service.create(settings)


@pytest.fixture(scope="module")
def wapi(server):
    return webuiapi.WebUIApi(baseurl=f"{server}{API}", sampler="Euler a", steps=2)


@pytest.fixture(scope="module")
def sdb(server):
    return sdbc.A1111Webservice(server)


def _seeds(result) -> list[int]:
    return result.info["all_seeds"]


def test_webuiapi_listings(wapi):
    samplers = wapi.get_samplers()
    assert len(samplers) >= 20 and {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"],
                                    "options": {"scheduler": "karras"}} in samplers
    assert {"DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "DPM fast", "DPM adaptive", "Restart"} <= {
        s["name"] for s in samplers}
    assert [s["name"] for s in wapi.get_schedulers()] == [
        "automatic", "uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "kl_optimal",
        "align_your_steps", "simple", "normal", "ddim", "beta"]
    assert all(isinstance(u["scale"], (int, float)) for u in wapi.get_upscalers())
    lora = next(x for x in wapi.get_loras() if x["name"] == "freckles")
    assert lora["metadata"] == {"ss_network_dim": "4", "ss_tag_frequency": {"set": {"freckles": 3}}}
    assert "Noir Test" in [s["name"] for s in wapi.get_prompt_styles()]


@pytest.mark.parametrize("sampler, scheduler, expect", [
    ("DPM++ 2M Karras", "automatic", ("DPM++ 2M", "Karras")),
    ("k_dpmpp_2m_ka", "automatic", ("DPM++ 2M", "Karras")),
    ("Euler a", "normal", ("Euler a", "Normal")),
    ("DPM++ 3M SDE", "exponential", ("DPM++ 3M SDE", "Exponential")),
])
def test_webuiapi_txt2img_legacy_names(wapi, sampler, scheduler, expect):
    r = wapi.txt2img(prompt="a face", sampler_name=sampler, scheduler=scheduler, seed=7, **SMALL)
    assert (r.info["sampler_name"], r.info["scheduler"]) == expect
    assert f"Sampler: {expect[0]}, Schedule type: {expect[1]}," in r.info["infotexts"][0]


def test_webuiapi_64_bit_seed_and_png_info(wapi):
    big = 2**64 - 1
    r = wapi.txt2img(prompt="a face", sampler_name="Euler", seed=big, styles=["Noir Test"], **SMALL)
    assert _seeds(r) == [big]
    info = wapi.png_info(r.image)
    params = info.info if isinstance(info.info, dict) else info.parameters
    assert params["Seed"] == str(big)
    assert params["Clip skip"] == "1" and params["RNG"] == "GPU" and params["Schedule type"] == "Automatic"
    assert params["Prompt"] == "a face, film noir"  # the style from A1111's styles.csv was applied


def test_sd_backend_client(sdb):
    from sd_backend_client import DiffusionParams

    assert "DPM++ 2M SDE Heun" in [s.name for s in sdb.get_samplers()]
    assert all(isinstance(u.scale, float) for u in sdb.get_upscalers())  # its model needs a number
    assert next(x for x in sdb.get_loras() if x.name == "freckles").metadata["ss_network_dim"] == "4"
    assert "Noir Test" in [s.name for s in sdb.get_styles()]
    for sampler, scheduler in (("dpmpp_2m", "karras"), ("euler", "normal"), ("DPM++ 2M Karras", "normal")):
        res = sdb.txt2img(DiffusionParams(prompt="a face", sampler=sampler, scheduler=scheduler,
                                          seed=2**63 + 5, **SMALL))
        assert len(res["images"]) == 1 and res["images"][0].size == (64, 64)
        assert res["info"].seed == 2**63 + 5


def test_bad_seed_and_names_are_4xx_naming_the_field(server):
    import httpx

    for body, field in (({"seed": 2**64}, "seed"), ({"subseed": 2**70}, "subseed"),
                        ({"sampler_name": "Warp Drive"}, "sampler_name"), ({"scheduler": "sideways"}, "scheduler"),
                        ({"infotext": 5}, "infotext")):
        r = httpx.post(f"{server}{API}/txt2img", json={"prompt": "x", **SMALL, **body}, timeout=60)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert field in r.text, (body, r.text)


def test_infotext_fills_what_the_body_does_not_set(server):
    import httpx

    text = ("an old sailor\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M Karras, CFG scale: 5, "
            "Seed: 99, Size: 64x64, Clip skip: 2")
    r = httpx.post(f"{server}{API}/txt2img", json={"infotext": text, "steps": 2, "seed": 5}, timeout=120)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert (info["prompt"], info["negative_prompt"], info["cfg_scale"], info["clip_skip"]) == (
        "an old sailor", "blurry", 5.0, 2)
    assert (info["sampler_name"], info["scheduler"]) == ("DPM++ 2M", "Karras")
    assert (info["steps"], info["seed"]) == (2, 5)  # set in the body: the body wins


def test_include_init_images(server):
    import httpx

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 90, 40)).save(buf, "PNG")
    init = base64.b64encode(buf.getvalue()).decode()
    body = {"prompt": "x", "init_images": [init], "denoising_strength": 0.5, "sampler_name": "Euler", **SMALL}
    plain = httpx.post(f"{server}{API}/img2img", json=body, timeout=120).json()
    assert plain["parameters"]["init_images"] is None
    kept = httpx.post(f"{server}{API}/img2img", json={**body, "include_init_images": True}, timeout=120).json()
    assert kept["parameters"]["init_images"] == [init]


def test_styles_csv_in_a1111s_place_reaches_the_ui_dropdown(service):
    from webui.ui.presets_panel import style_choices

    assert "Noir Test" in [name for _label, name in style_choices(service)]
