"""The REST API (/sdapi/v1) and the named Gradio endpoints, through a real running server.

One server per module (plus one with --auth sharing the same Service): tiny offline models,
64x64, 2-3 steps.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from webui.metadata.image_meta import png_bytes_with_infotext, read_infotext
from webui.serving.service import Service
from webui.settings import Settings

API = "/sdapi/v1"
BASE = dict(prompt="portrait of an old sailor, oil painting", negative_prompt="blurry", seed=1234, steps=2,
            cfg_scale=7, width=64, height=64, sampler_name="Euler", scheduler="Automatic", batch_size=1, n_iter=1)


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("api-models")
    ckpts = root / "Stable-diffusion"
    ckpts.mkdir()
    shutil.copy(tiny_models["sd1"].file, ckpts / "alpha.safetensors")
    shutil.copy(tiny_models["sd1-inpaint"].file, ckpts / "painter.safetensors")
    (root / "Lora").mkdir()
    (root / "Lora" / "freckles.safetensors").write_bytes(b"x")
    (root / "VAE").mkdir()
    (root / "VAE" / "soft.safetensors").write_bytes(b"x")
    settings = Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("api-out"), device="cpu")
    return Service.create(settings)


@pytest.fixture(scope="module")
def auth_server(service, launch_app):
    """The same Service (manager, jobs) behind --auth with two users."""
    secured = dataclasses.replace(service, settings=dataclasses.replace(
        service.settings, auth=(("ann", "pw-ann"), ("bob", "pw-bob"))))
    demo, url = launch_app(secured)
    yield url
    demo.close()


def b64(img: Image.Image, infotext: str | None = None, data_url: bool = False) -> str:
    s = base64.b64encode(png_bytes_with_infotext(img, infotext)).decode()
    return "data:image/png;base64," + s if data_url else s


def decode(s: str) -> tuple[np.ndarray, str | None]:
    raw = base64.b64decode(s)
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")), read_infotext(raw)[0]


def ensure_alpha(http):
    r = http.post(f"{API}/options", json={"sd_model_checkpoint": "alpha"})
    assert r.status_code == 200, r.text


# ---- shapes ---------------------------------------------------------------------------------

def test_listing_routes_have_a1111_shapes(http):
    models = http.get(f"{API}/sd-models").json()
    assert [m["model_name"] for m in models] == ["alpha", "painter"]
    assert set(models[0]) >= {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert models[0]["title"].startswith("alpha.safetensors")

    samplers = http.get(f"{API}/samplers").json()
    assert {"name": "Euler a", "aliases": ["k_euler_a", "k_euler_ancestral"], "options": {"uses_ensd": "True"}} in samplers
    schedulers = http.get(f"{API}/schedulers").json()
    assert {"name": "karras", "label": "Karras"}.items() <= next(s for s in schedulers if s["label"] == "Karras").items()

    assert http.get(f"{API}/loras").json()[0]["name"] == "freckles"
    assert http.get(f"{API}/sd-vae").json()[0]["model_name"] == "soft.safetensors"
    emb = http.get(f"{API}/embeddings").json()
    assert set(emb) == {"loaded", "skipped"}
    styles = http.get(f"{API}/prompt-styles").json()
    assert styles and set(styles[0]) == {"name", "prompt", "negative_prompt"}
    ups = http.get(f"{API}/upscalers").json()
    assert [u["name"] for u in ups][:3] == ["None", "Lanczos", "Nearest"]
    assert set(ups[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert all(isinstance(u["scale"], (int, float)) for u in ups)  # A1111 says 4 for None/Lanczos/Nearest too
    assert {"name": "Latent"} in http.get(f"{API}/latent-upscale-modes").json()
    mem = http.get(f"{API}/memory").json()
    assert mem["ram"]["total"] > 0 and "cuda" in mem
    prog = http.get(f"{API}/progress").json()
    assert set(prog) >= {"progress", "eta_relative", "state", "current_image"}
    assert {"job_count", "sampling_step", "sampling_steps"} <= set(prog["state"])
    assert http.post(f"{API}/refresh-checkpoints").status_code == 200
    assert "x/y/z plot" in http.get(f"{API}/scripts").json()["txt2img"]  # more in test_scripts_api.py
    assert http.get(f"{API}/cmd-flags").json()["api"] is True
    opts = http.get(f"{API}/options").json()
    assert opts["sd_model_checkpoint"].startswith(("alpha.safetensors", "painter.safetensors"))


def test_openapi_page_lists_the_rest_routes(http):
    paths = http.get("/openapi.json").json()["paths"]
    for route in ("txt2img", "img2img", "options", "sd-models", "samplers", "schedulers", "sd-vae", "loras",
                  "embeddings", "prompt-styles", "upscalers", "progress", "interrupt", "skip", "png-info",
                  "refresh-checkpoints", "memory"):
        assert f"{API}/{route}" in paths, route
    assert paths[f"{API}/txt2img"]["post"]["summary"]
    # Gradio's internal routes stay out; the ControlNet and ADetailer extensions' routes are in
    assert all(p.startswith((API, "/controlnet/", "/adetailer/v1/")) for p in paths)
    assert "swagger" in http.get("/docs").text.lower()


def test_txt2img_shape_and_info(http):
    ensure_alpha(http)
    r = http.post(f"{API}/txt2img", json={**BASE, "batch_size": 2, "n_iter": 2, "unknown_field": {"x": 1},
                                          "alwayson_scripts": {}, "extra_params": {"Injected": "1"},
                                          "mask": "not used by txt2img"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"images", "parameters", "info"}
    assert len(body["images"]) == 4
    assert body["parameters"]["prompt"] == BASE["prompt"] and body["parameters"]["steps"] == 2
    info = json.loads(body["info"])
    assert info["all_seeds"] == [1234, 1235, 1236, 1237] and info["seed"] == 1234
    assert len(info["infotexts"]) == 4 and len(info["all_prompts"]) == 4
    assert info["sd_model_name"] == "alpha" and len(info["sd_model_hash"]) == 10
    assert (info["sampler_name"], info["cfg_scale"], info["steps"], info["width"], info["batch_size"],
            info["n_iter"]) == ("Euler", 7, 2, 64, 2, 2)
    for img64, text in zip(body["images"], info["infotexts"]):
        pixels, chunk = decode(img64)
        assert pixels.shape == (64, 64, 3)
        assert chunk == text  # every PNG carries its own infotext
    assert "Seed: 1235" in info["infotexts"][1]
    assert "Injected" not in info["infotexts"][0]  # internal fields are not settable from outside


def test_send_images_false_returns_no_images(http):
    r = http.post(f"{API}/txt2img", json={**BASE, "send_images": False})
    assert r.status_code == 200 and r.json()["images"] == []


def test_rest_and_gradio_client_give_identical_images(http, server):
    from gradio_client import Client

    ensure_alpha(http)
    rest = http.post(f"{API}/txt2img", json={**BASE, "seed": 777}).json()
    rest_pixels, rest_info = decode(rest["images"][0])

    client = Client(server, verbose=False)
    gallery, info_text = client.predict(
        BASE["prompt"], BASE["negative_prompt"], 2, 7, 777, 64, 64, "Euler", "Automatic", 1, 1, None,
        api_name="/txt2img")[:2]
    path = gallery[0]["image"] if isinstance(gallery[0], dict) else gallery[0][0]
    path = path["path"] if isinstance(path, dict) else path
    ui_pixels = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(rest_pixels, ui_pixels)
    assert rest_info == info_text == read_infotext(path)[0]


def test_img2img_and_inpaint_with_data_urls(http):
    ensure_alpha(http)
    init = Image.new("RGB", (64, 64), (200, 120, 90))
    r = http.post(f"{API}/img2img", json={**BASE, "init_images": [b64(init, data_url=True)],
                                          "denoising_strength": 0.5})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["task"] == "img2img" and "Denoising strength: 0.5" in info["infotexts"][0]
    assert r.json()["parameters"]["init_images"] is None  # echoed without the image, as A1111

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    r = http.post(f"{API}/img2img", json={**BASE, "init_images": [b64(init)], "mask": b64(mask.convert("RGB")),
                                          "mask_blur": 0, "inpainting_fill": 1, "inpaint_full_res": False,
                                          "denoising_strength": 0.9,
                                          "override_settings": {"sd_model_checkpoint": "painter"}})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["task"] == "inpaint" and info["sd_model_name"] == "painter"
    assert "Mask blur: 0" in info["infotexts"][0]
    out, _ = decode(r.json()["images"][0])
    # Outside the mask the original pixels are kept.
    assert np.array_equal(out[:8, :8], np.asarray(init)[:8, :8])


def test_options_switches_the_model_by_hash_title_and_name(http):
    assert http.post(f"{API}/options", json={"sd_model_checkpoint": "painter"}).status_code == 200
    assert http.get(f"{API}/options").json()["sd_model_checkpoint"].startswith("painter.safetensors")
    painter_hash = [m for m in http.get(f"{API}/sd-models").json() if m["model_name"] == "painter"][0]["hash"]
    assert len(painter_hash) == 10  # known once loaded
    ensure_alpha(http)
    assert http.get(f"{API}/options").json()["sd_model_checkpoint"].startswith("alpha.safetensors")
    assert http.post(f"{API}/options", json={"sd_model_checkpoint": painter_hash, "some_setting": 3}).status_code == 200
    assert http.get(f"{API}/options").json()["sd_model_checkpoint"].startswith("painter.safetensors")
    alpha_title = [m for m in http.get(f"{API}/sd-models").json() if m["model_name"] == "alpha"][0]["title"]
    assert http.post(f"{API}/options", json={"sd_model_checkpoint": alpha_title}).status_code == 200
    assert http.get(f"{API}/options").json()["sd_model_checkpoint"] == alpha_title
    info = json.loads(http.post(f"{API}/txt2img", json=BASE).json()["info"])
    assert info["sd_model_name"] == "alpha"


# ---- png-info ---------------------------------------------------------------------------------

VARIANTS = {
    "pre-1.9": ("portrait of a knight\nNegative prompt: blurry\n"
                "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x768, "
                "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"),
    "forge": ("portrait of a knight\nNegative prompt: blurry\n"
              "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, "
              "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: f2.0.1v1.10.1-previous-313, "
              "Module 1: sdxl_vae, Diffusion in Low Bits: Automatic"),
    "sdnext": ("portrait of a knight\nNegative prompt: blurry\n"
               "Steps: 20, Seed: 42, Sampler: DPM++ 2M, Scheduler: Karras, CFG scale: 7, Size: 512x768, "
               "Model: v1-5-pruned-emaonly, Backend: Diffusers, App: SD.Next, Version: 1a2b3c4"),
}
EXPECTED_SAMPLER = {"pre-1.9": ("DPM++ 2M", "Karras"), "forge": ("Euler a", "Karras"),
                    "sdnext": ("DPM++ 2M", "Karras")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_png_info_reads_the_infotext_variants(http, variant):
    text = VARIANTS[variant]
    r = http.post(f"{API}/png-info", json={"image": b64(Image.new("RGB", (8, 8)), text)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["info"] == text
    assert body["parameters"]["Prompt"] == "portrait of a knight"
    assert body["parameters"]["Negative prompt"] == "blurry"
    assert (body["parameters"]["Size-1"], body["parameters"]["Size-2"]) == ("512", "768")
    f = body["fields"]
    assert (f["sampler_name"], f["scheduler"]) == EXPECTED_SAMPLER[variant]
    assert (f["steps"], f["seed"], f["width"], f["height"], f["cfg_scale"]) == (20, 42, 512, 768, 7.0)
    if variant == "forge":
        assert body["parameters"]["Module 1"] == "sdxl_vae"


def test_png_info_on_this_apps_images_and_jpeg(http, server, tmp_path):
    ensure_alpha(http)
    out = http.post(f"{API}/txt2img", json=BASE).json()
    text = json.loads(out["info"])["infotexts"][0]
    r = http.post(f"{API}/png-info", json={"image": "data:image/png;base64," + out["images"][0]}).json()
    assert r["info"] == text and r["fields"]["seed"] == 1234 and r["parameters"]["Model"] == "alpha"

    # JPEG with EXIF UserComment, through the named Gradio endpoint too.
    from gradio_client import Client, handle_file

    from webui.metadata.image_meta import image_bytes_with_infotext
    jpg = image_bytes_with_infotext(Image.new("RGB", (16, 16), "red"), text, "JPEG")
    path = tmp_path / "x.jpg"
    path.write_bytes(jpg)
    assert http.post(f"{API}/png-info", json={"image": base64.b64encode(jpg).decode()}).json()["info"] == text
    info, by_key, _items = Client(server, verbose=False).predict(handle_file(str(path)), api_name="/png_info")
    assert info == text and by_key["Seed"] == "1234"


def test_png_info_image_without_parameters(http):
    r = http.post(f"{API}/png-info", json={"image": b64(Image.new("RGB", (8, 8)))})
    assert r.status_code == 200 and r.json()["info"] == "" and r.json()["parameters"] == {}


# ---- progress, interrupt, skip: scoped to the caller's job ---------------------------------

def _start_long_job(base_url, auth, task_id, results):
    def run():
        with httpx.Client(base_url=base_url, auth=auth, timeout=300) as c:
            results[task_id] = c.post(f"{API}/txt2img", json={**BASE, "steps": 150, "n_iter": 6,
                                                              "force_task_id": task_id})
    t = threading.Thread(target=run)
    t.start()
    return t


def _wait_running(client, task_id):
    for _ in range(600):
        p = client.get(f"{API}/progress", params={"id_task": task_id}).json()
        if p["state"]["job"] == task_id and p["state"]["sampling_step"] > 0:
            return p
        time.sleep(0.05)
    raise AssertionError("job never started")


def test_interrupt_is_scoped_to_the_callers_job(auth_server, service):
    ann = httpx.Client(base_url=auth_server, auth=("ann", "pw-ann"), timeout=60)
    bob = httpx.Client(base_url=auth_server, auth=("bob", "pw-bob"), timeout=60)
    results: dict = {}
    t = _start_long_job(auth_server, ("ann", "pw-ann"), "ann-job-1", results)
    try:
        p = _wait_running(ann, "ann-job-1")
        assert p["progress"] > 0 and p["state"]["sampling_steps"] == 150 and p["current_task"] == "ann-job-1"
        # The live preview, once the job has one, comes back as current_image.
        service.jobs.get("ann-job-1").set_preview(Image.new("RGB", (8, 8), (10, 200, 30)), "approx")
        preview = ann.get(f"{API}/progress", params={"id_task": "ann-job-1"}).json()["current_image"]
        assert decode(preview)[0][0, 0].tolist() == [10, 200, 30]
        assert ann.get(f"{API}/progress", params={"id_task": "ann-job-1", "skip_current_image": True}
                       ).json()["current_image"] is None
        # Bob sees nothing of Ann's job and cannot stop it, neither by default nor by its id.
        assert bob.get(f"{API}/progress").json()["state"]["job_count"] == 0
        assert bob.get(f"{API}/progress", params={"id_task": "ann-job-1"}).json()["state"]["job"] == ""
        assert bob.post(f"{API}/interrupt").json() == {"job": None}
        assert bob.post(f"{API}/interrupt", json={"id_task": "ann-job-1"}).json() == {"job": None}
        assert bob.post(f"{API}/skip", params={"id_task": "ann-job-1"}).json() == {"job": None}
        # Ann's job is still running; Ann's own interrupt (no id: her latest job) stops it.
        assert ann.get(f"{API}/progress").json()["state"]["job"] == "ann-job-1"
        assert ann.post(f"{API}/interrupt").json() == {"job": "ann-job-1"}
    finally:
        t.join(timeout=300)
    r = results["ann-job-1"]
    assert r.status_code == 200
    info = json.loads(r.json()["info"])
    assert info["interrupted"] is True and len(r.json()["images"]) < 6
    # The same id cannot be reused while the job is remembered.
    again = ann.post(f"{API}/txt2img", json={**BASE, "force_task_id": "ann-job-1"})
    assert again.status_code == 422 and again.json()["field"] == "force_task_id"


def test_skip_moves_to_the_next_batch(auth_server):
    ann = httpx.Client(base_url=auth_server, auth=("ann", "pw-ann"), timeout=60)
    results: dict = {}
    t = _start_long_job(auth_server, ("ann", "pw-ann"), "ann-skip", results)
    try:
        _wait_running(ann, "ann-skip")
        assert ann.post(f"{API}/skip", json={"id_task": "ann-skip"}).json() == {"job": "ann-skip"}
        for _ in range(600):
            p = ann.get(f"{API}/progress", params={"id_task": "ann-skip"}).json()
            if p["state"]["job_no"] >= 1 or not p["state"]["job"]:
                break
            time.sleep(0.05)
        assert p["state"]["job_no"] >= 1  # on to the next batch, not stopped
        ann.post(f"{API}/interrupt", params={"id_task": "ann-skip"})
    finally:
        t.join(timeout=300)
    # Skip drops the image it cut short (README: "Skip"); the interrupt then keeps the one it
    # stopped, so exactly one image comes back -- from the second seed, not the first.
    body = results["ann-skip"].json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 1
    assert info["all_seeds"][0] >= BASE["seed"] + 1


# ---- auth ---------------------------------------------------------------------------------------

def test_auth_required_when_configured(auth_server, server):
    assert httpx.get(f"{auth_server}{API}/sd-models").status_code == 401
    r = httpx.get(f"{auth_server}{API}/sd-models", auth=("ann", "wrong"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Basic"
    assert httpx.post(f"{auth_server}{API}/txt2img", json=BASE).status_code == 401
    assert httpx.get(f"{auth_server}{API}/sd-models", auth=("bob", "pw-bob")).status_code == 200
    ok = httpx.post(f"{auth_server}{API}/txt2img", json=BASE, auth=("ann", "pw-ann"), timeout=120)
    assert ok.status_code == 200 and len(ok.json()["images"]) == 1
    # Without --auth the API is open.
    assert httpx.get(f"{server}{API}/sd-models").status_code == 200


def test_gradio_client_with_auth(auth_server):
    from gradio_client import Client

    client = Client(auth_server, auth=("bob", "pw-bob"), verbose=False)
    gallery, info = client.predict(BASE["prompt"], "", 2, 7, 5, 64, 64, "Euler", "Automatic", 1, 1, None,
                                   api_name="/txt2img")[:2]
    assert len(gallery) == 1 and "Seed: 5" in info


# ---- bad input: 4xx naming the field, and the server keeps serving --------------------------

@pytest.mark.parametrize("route,body,status,field", [
    ("txt2img", {"steps": "many"}, 422, "steps"),
    ("txt2img", {"width": [64]}, 422, "width"),
    ("txt2img", {"steps": 0}, 422, "steps"),
    ("txt2img", {"steps": 100000}, 422, "steps"),
    ("txt2img", {"width": 100}, 422, "width"),
    ("txt2img", {"width": 8192, "height": 64}, 422, "width"),
    ("txt2img", {"batch_size": 999}, 422, "batch_size"),
    ("txt2img", {"sampler_name": "Warp Drive"}, 422, "sampler_name"),
    ("txt2img", {"scheduler": "Sideways"}, 422, "scheduler"),
    ("txt2img", {"override_settings": {"sd_model_checkpoint": "no-such-model"}}, 404, "sd_model_checkpoint"),
    ("txt2img", {"override_settings": {"sd_model_checkpoint": "../../etc/passwd"}}, 400, "sd_model_checkpoint"),
    ("txt2img", {"force_task_id": "a/b"}, 422, "force_task_id"),
    ("txt2img", {"prompt": "a BREAK b", "regions": {"ratios": "1,0"}}, 422, "regions"),
    ("txt2img", {"prompt": "a BREAK b BREAK c", "regional_prompter": {"ratios": "1,1"}}, 422, "regions"),
    ("txt2img", {"prompt": "a BREAK b BREAK c BREAK d BREAK e", "regions": {"ratios": "1,1,1,1"}}, 422, "prompt"),
    ("img2img", {"init_images": ["aGVsbG8gd29ybGQ="]}, 422, "init_images"),
    ("img2img", {"init_images": ["%%%not base64%%%"]}, 422, "init_images"),
    ("img2img", {"init_images": []}, 422, "init_images"),
    ("img2img", {}, 422, "init_images"),
    ("png-info", {"image": "aGVsbG8gd29ybGQ="}, 422, "image"),
    ("png-info", {"image": ""}, 422, "image"),
    ("png-info", {}, 422, "image"),
    ("options", {"sd_model_checkpoint": "nope"}, 404, "sd_model_checkpoint"),
    ("options", {"sd_model_checkpoint": "/abs/model.safetensors"}, 400, "sd_model_checkpoint"),
    ("options", {"sd_model_checkpoint": 12}, 422, "sd_model_checkpoint"),
])
def test_bad_input_is_a_4xx_naming_the_field(http, route, body, status, field):
    payload = {**BASE, **body} if route in ("txt2img", "img2img") else body
    r = http.post(f"{API}/{route}", json=payload)
    assert r.status_code == status, r.text
    detail = r.json()
    names = [detail.get("field")] if "field" in detail else [e["loc"][-1] for e in detail["detail"]]
    assert field in names, detail
    if "field" in detail:
        assert isinstance(detail["detail"], str) and detail["detail"]


def test_regions_through_rest_and_back_from_the_infotext(http):
    r = http.post(f"{API}/txt2img", json={**BASE, "prompt": "sailor ADDCOMM red coat BREAK blue sea",
                                          "regions": {"mode": "Rows", "ratios": "1,2"}})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])["infotexts"][0]
    assert 'Regions mode: Rows, Regions ratios: "1,2"' in info
    again = http.post(f"{API}/txt2img", json={"infotext": info, "width": 64, "height": 64, "steps": 2})
    assert again.status_code == 200, again.text
    assert again.json()["parameters"]["regions"] == {"mode": "Rows", "ratios": "1,2"}


def test_mask_preset_through_rest(http):
    pytest.importorskip("skimage.data")
    from skimage import data as skdata
    from webui.models import mediapipe_models
    ensure_alpha(http)
    face = Image.fromarray(skdata.astronaut()).resize((128, 128))
    r = http.post(f"{API}/img2img", json={**BASE, "init_images": [b64(face)], "mask_preset": "elbows"})
    assert r.status_code == 422 and r.json()["field"] == "mask_preset", r.text
    assert "face, person, background, hands" in r.json()["detail"]
    if mediapipe_models.unavailable():
        return
    sky = Image.new("RGB", (64, 64), (120, 170, 230))
    r = http.post(f"{API}/img2img", json={**BASE, "init_images": [b64(sky)], "mask_preset": "face"})
    assert r.status_code == 422 and r.json()["field"] == "mask_preset", r.text
    assert "no face found for the mask preset 'face'" in r.json()["detail"]
    r = http.post(f"{API}/img2img", json={**BASE, "init_images": [b64(face)], "mask_preset": "face",
                                          "denoising_strength": 0.8})
    assert r.status_code == 200, r.text  # and the server kept serving
    info = json.loads(r.json()["info"])
    assert info["task"] == "inpaint" and "Mask preset: face" in info["infotexts"][0]


def test_malformed_json_and_wrong_body_type(http):
    r = http.post(f"{API}/txt2img", content=b'{"prompt": "x",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.text
    r = http.post(f"{API}/txt2img", json=["not", "an", "object"])
    assert r.status_code == 422
    r = http.post(f"{API}/options", content=b"nope", headers={"content-type": "application/json"})
    assert r.status_code == 422
    # Still serving, and the model still works.
    ensure_alpha(http)
    assert http.post(f"{API}/txt2img", json=BASE).status_code == 200


def test_no_api_flag_leaves_the_routes_off(service):
    from webui.ui import launch_kwargs

    off = dataclasses.replace(service, settings=dataclasses.replace(service.settings, api=False))
    assert "lifespan" not in launch_kwargs(off)["app_kwargs"]
    assert "lifespan" in launch_kwargs(service)["app_kwargs"]


# ---- Gradio API page and the PNG Info "Send to txt2img" -----------------------------------

def test_gradio_api_page_shows_only_named_endpoints(server):
    from gradio_client import Client

    info = Client(server, verbose=False).view_api(print_info=False, return_format="dict")
    named = set(info["named_endpoints"])
    assert {"/txt2img", "/png_info"} <= named
    assert not info["unnamed_endpoints"]
    internal = {"/refresh_list", "/switch", "/last_seed", "/show_info", "/send_to_txt2img", "/lambda"}
    assert not named & internal
    params = [p["parameter_name"] for p in info["named_endpoints"]["/txt2img"]["parameters"]]
    assert params[:4] == ["prompt", "negative_prompt", "steps", "cfg_scale"]  # A1111 names


def test_send_to_txt2img_fills_every_control_the_infotext_names(service):
    import gradio as gr
    from types import SimpleNamespace

    from webui.ui import txt2img
    from webui.ui.pnginfo import _value_controls, endpoint_controls, send_fields, send_updates

    with gr.Blocks() as demo:
        checkpoint = gr.Dropdown(service.checkpoint_titles(), value=service.active_title())
        sd_vae = gr.Dropdown(["Automatic"], value="Automatic")
        shared = SimpleNamespace(checkpoint=checkpoint, sd_vae=sd_vae, tabs=None, controls={})
        controls = txt2img.build(service, shared)
    targets = {**_value_controls(controls), **endpoint_controls(demo, "txt2img")}
    targets = {n: c for n, c in targets.items() if c not in (checkpoint, sd_vae) and n != "sd_model_checkpoint"}
    assert {"prompt", "steps", "seed", "enable_hr", "hr_scale", "denoising_strength"} <= set(targets)
    model = service.manager.active
    text = ("portrait of a knight\nNegative prompt: blurry\nSteps: 31, Sampler: DPM++ 2M Karras, CFG scale: 6.5, "
            f"Seed: 42, Size: 512x768, Model hash: {model.model_hash}, Model: {model.ckpt.name}, "
            "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 3, Hires upscaler: Latent, Version: v1.6.0")

    def send(text, **kw):
        updates = send_updates(service, send_fields(text), targets, **kw)
        return {name: u.get("value") for name, u in zip(list(targets) + ["checkpoint"], updates)}

    values = send(text, checkpoint=checkpoint)
    assert values["prompt"] == "portrait of a knight" and values["negative_prompt"] == "blurry"
    assert (values["steps"], values["sampler_name"], values["scheduler"], values["cfg_scale"], values["seed"],
            values["width"], values["height"]) == (31, "DPM++ 2M", "Karras", 6.5, 42, 512, 768)
    assert (values["enable_hr"], values["hr_scale"], values["hr_second_pass_steps"], values["hr_upscaler"],
            values["denoising_strength"]) == (True, 1.5, 3, "Latent", 0.45)
    assert values["checkpoint"] == service.active_title()
    assert values["batch_size"] is None  # not in the text: left as it is

    # Without hires keys, hires fix is switched off; a sampler this UI cannot run is left as it is.
    plain = text.replace("Sampler: DPM++ 2M Karras", "Sampler: Euler SMEA Dyn").split(", Denoising")[0]
    values = send(plain)
    assert values["enable_hr"] is False and values["sampler_name"] is None and values["steps"] == 31
