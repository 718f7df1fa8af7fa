"""A1111's tool routes and the ControlNet / ADetailer extensions' routes, driven through a real
running server with two A1111 client libraries from PyPI (webuiapi, sd-backend-client): extras
(one image and a batch), the ESRGAN listing, interrogate (a tiny random-weight BLIP built
offline), unloading and reloading the checkpoint, ControlNet models/modules/detect/render and
ADetailer's version/schema/models; bad input answers 4xx naming what to change.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import shutil
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from webui.metadata.image_meta import png_bytes_with_infotext, read_infotext
from webui.serving.service import Service
from webui.settings import Settings

webuiapi = pytest.importorskip("webuiapi")
if importlib.util.find_spec("spandrel") is None:  # loaded through webui.models.upscalers
    pytest.skip("spandrel is not installed", allow_module_level=True)
from test_upscalers import rrdbnet_state_dict  # noqa: E402  (the tiny ESRGAN fixture)

API = "/sdapi/v1"
INFO = "an old sailor\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, Seed: 5, Size: 40x32, Version: v1"


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("tools-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "beta.safetensors")
    (root / "ESRGAN").mkdir()
    torch.save(rrdbnet_state_dict(), root / "ESRGAN" / "4x-Tiny.pth")
    (root / "ControlNet").mkdir()
    (root / "ControlNet" / "control_v11p_sd15_canny.safetensors").write_bytes(b"x")
    # beta is selected at start, not alpha (the first): unload/reload must bring back the selected one
    svc = Service.create(Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("tools-out"), device="cpu",
                                  model=str(root / "Stable-diffusion" / "beta.safetensors")))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def api(server):
    u = urlparse(server)
    return webuiapi.WebUIApi(host=u.hostname, port=u.port)


@pytest.fixture(scope="module")
def backend(server):
    from sd_backend_client.api.a1111_webservice import A1111Webservice
    return A1111Webservice(server)


def picture(w=40, h=32, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return Image.open(io.BytesIO(png_bytes_with_infotext(img, INFO)))  # carries its infotext, as an upload


def build_tiny_blip(folder) -> None:
    """A random-weight BLIP captioner in transformers' layout, built offline from a config."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "old", "sailor", "sea"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]"))
    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = BlipConfig(text_config=dict(vocab_size=len(words), encoder_hidden_size=32, bos_token_id=5,
                                         pad_token_id=0, sep_token_id=3, eos_token_id=3,
                                         max_position_embeddings=64, **small),
                        vision_config=dict(image_size=32, patch_size=8, **small), projection_dim=32)
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)


# ---- extras ----------------------------------------------------------------------------------

def test_extra_single_image_upscales_by_a_factor_and_keeps_the_infotext(api):
    r = api.extra_single_image(picture(), upscaler_1="Lanczos", upscaling_resize=2)
    assert r.image.size == (80, 64)
    info = read_infotext(r.image)[0]
    assert info.startswith("an old sailor") and "Postprocess upscale by: 2" in info
    assert "Postprocess upscaler: Lanczos" in info and "Postprocess upscale by" in r.info  # html_info


def test_extra_single_image_to_a_size_with_crop_and_a_second_upscaler(api):
    r = api.extra_single_image(picture(), resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100,
                               upscaling_crop=True, upscaler_1="Nearest", upscaler_2="4x-Tiny",
                               extras_upscaler_2_visibility=0.5)
    assert r.image.size == (100, 100)
    plain = api.extra_single_image(picture(), resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100,
                                   upscaling_crop=False, upscaler_1="Nearest")
    assert plain.image.size == (125, 100)  # by the larger ratio, not cut
    alone = api.extra_single_image(picture(), resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100,
                                   upscaler_1="Nearest")
    assert not np.array_equal(np.asarray(alone.image), np.asarray(r.image))  # the blend shows


def test_extra_single_image_face_restoration_is_a_warning_and_none_keeps_the_picture(api):
    src = picture()
    r = api.extra_single_image(src, upscaler_1="None", codeformer_visibility=1)
    assert "CodeFormer" in r.info and "not available" in r.info
    assert np.array_equal(np.asarray(r.image.convert("RGB")), np.asarray(src.convert("RGB")))


def test_extra_batch_images(api, backend):
    r = api.extra_batch_images([picture(seed=1), picture(20, 20, seed=2)], upscaler_1="4x-Tiny", upscaling_resize=2)
    assert [i.size for i in r.images] == [(80, 64), (40, 40)]
    # sd-backend-client's own upscale(): it lists /upscalers (their numeric scales), picks the
    # first real one and posts extra-single-image with a target size.
    out = backend.upscale(picture(), 64, 48)
    images = out["images"] if isinstance(out, dict) else out.images
    assert images[0].size == (64, 48)


def test_extras_bad_input_is_a_4xx_naming_the_field(server):
    post = lambda path, body: httpx.post(f"{server}{API}/{path}", json=body, timeout=60)  # noqa: E731
    good = base64.b64encode(png_bytes_with_infotext(picture(), None)).decode()
    for body, field in [({"image": "not base64!!", "upscaler_1": "Lanczos"}, "image"),
                        ({"image": good, "upscaler_1": "Bogus"}, "upscaler_1"),
                        ({"image": good, "upscaler_1": "Lanczos", "upscaling_resize": 99}, "upscaling_resize")]:
        r = post("extra-single-image", body)
        assert 400 <= r.status_code < 500 and r.json()["field"] == field, r.text
    r = post("extra-batch-images", {"imageList": [{"data": "@@", "name": "x"}], "upscaler_1": "Lanczos"})
    assert r.status_code == 422 and r.json()["field"] == "imageList[0].data"


def test_realesrgan_models(api):
    assert api.get_realesrgan_models() == [
        {"name": "4x-Tiny", "path": api.get_realesrgan_models()[0]["path"], "scale": 4}]
    assert api.get_realesrgan_models()[0]["path"].endswith("4x-Tiny.pth")


# ---- interrogate -----------------------------------------------------------------------------

def test_interrogate_needs_a_blip_folder_then_captions(api, backend, service, server):
    r = httpx.post(f"{server}{API}/interrogate", json={"image": api_b64(picture()), "model": "clip"}, timeout=60)
    assert r.status_code == 422 and r.json()["field"] == "model", r.text
    assert str(service.settings.models_dir / "BLIP") in r.json()["detail"] and "config.json" in r.json()["detail"]
    r = httpx.post(f"{server}{API}/interrogate", json={"image": api_b64(picture()), "model": "deepdanbooru"})
    assert r.status_code == 422 and "deepdanbooru" in r.json()["detail"]
    r = httpx.post(f"{server}{API}/interrogate", json={"image": "%%%", "model": "clip"})
    assert r.status_code == 422 and r.json()["field"] == "image"
    build_tiny_blip(service.settings.models_dir / "BLIP" / "tiny-blip")
    caption = api.interrogate(picture(), model="clip").info
    assert isinstance(caption, str) and caption
    assert backend.interrogate(picture()) == caption  # same picture, same greedy caption


def api_b64(img) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes_with_infotext(img, None)).decode()


# ---- checkpoint unload / reload ----------------------------------------------------------------

def test_unload_frees_the_model_and_the_next_request_loads_it_again(server, service):
    assert service.active_title().startswith("beta")
    assert httpx.post(f"{server}{API}/unload-checkpoint", timeout=60).status_code == 200
    assert service.active_title() is None
    r = httpx.post(f"{server}{API}/txt2img", json=dict(prompt="a", steps=1, width=64, height=64), timeout=120)
    assert r.status_code == 200 and service.active_title().startswith("beta")
    httpx.post(f"{server}{API}/unload-checkpoint", timeout=60)
    assert httpx.post(f"{server}{API}/reload-checkpoint", timeout=60).status_code == 200
    assert service.active_title().startswith("beta")


# ---- the ControlNet extension's routes -------------------------------------------------------

def test_controlnet_listings(api, backend):
    assert api.controlnet_version() == 2 and backend.get_controlnet_version() == 2
    assert api.controlnet_model_list() == ["control_v11p_sd15_canny"]
    assert "canny" in api.controlnet_module_list() and "openpose_full" in api.controlnet_module_list()
    modules = backend.get_controlnet_modules()
    assert modules.module_details["canny"].sliders[1].name == "Low Threshold"
    assert "canny" in [p.name for p in backend.get_controlnet_preprocessors()]
    types = backend.get_controlnet_control_types()["control_types"]
    assert types["Canny"]["default_model"] == "control_v11p_sd15_canny"
    assert backend.get_controlnet_settings()["control_net_unit_count"] == 3
    assert backend.get_capabilities().controlnet and backend.get_capabilities().interrogate


def test_controlnet_detect_runs_the_preprocessor(api, backend, server):
    img = Image.new("RGB", (64, 48))
    img.paste((255, 255, 255), (16, 12, 48, 36))
    r = api.controlnet_detect([img], module="canny", threshold_a=50, threshold_b=100)
    edges = np.asarray(r.images[0].convert("L"))
    assert r.images[0].size == (64, 48) and edges[10:14, 30].max() == 255 and edges[24, 30] == 0
    preprocessor = next(p for p in backend.get_controlnet_preprocessors() if p.name == "canny")
    assert backend.controlnet_preprocessor_preview(img, None, preprocessor).size == (64, 48)
    r = httpx.post(f"{server}/controlnet/detect", json={"controlnet_module": "sketchy",
                                                        "controlnet_input_images": [api_b64(img)]})
    assert r.status_code == 422 and r.json()["field"] == "controlnet_module" and "sketchy" in r.json()["detail"]
    r = httpx.post(f"{server}/controlnet/detect", json={"controlnet_module": "canny",
                                                        "controlnet_input_images": ["%%"]})
    assert r.status_code == 422 and r.json()["field"] == "controlnet_input_images[0]"


def test_controlnet_render_openpose_json(server):
    body = [0.0] * 54
    for i, (x, y) in enumerate([(50, 20), (50, 40), (35, 40), (30, 60), (28, 80), (65, 40)]):
        body[3 * i:3 * i + 3] = [x, y, 1.0]
    pose = {"people": [{"pose_keypoints_2d": body}], "canvas_width": 100, "canvas_height": 120}
    r = httpx.post(f"{server}/controlnet/render_openpose_json", json=[pose], timeout=60)
    assert r.status_code == 200, r.text
    img = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert img.size == (100, 120) and np.asarray(img).max() > 0
    r = httpx.post(f"{server}/controlnet/render_openpose_json", json=[{**pose, "canvas_width": 10**6}])
    assert r.status_code == 422 and "canvas_width" in r.json()["detail"]


# ---- the ADetailer extension's routes --------------------------------------------------------

def test_adetailer_routes_describe_the_fields_honoured(server):
    from webui.request.face import _AD_KEYS, face_fields_from_alwayson

    assert httpx.get(f"{server}/adetailer/v1/version").json()["version"]
    models = httpx.get(f"{server}/adetailer/v1/ad_model").json()["ad_model"]
    assert "face_yolov8n.pt" in models
    props = httpx.get(f"{server}/adetailer/v1/schema").json()["properties"]
    assert set(_AD_KEYS) <= set(props)
    unit = {k: v["default"] for k, v in props.items()}
    unit.update(ad_model=models[0], ad_use_steps=True, ad_use_inpaint_width_height=True)
    fields = face_fields_from_alwayson({"ADetailer": {"args": [unit]}})
    # every field in the schema reaches the face pass: ad_model turns it on, the two ad_use_*
    # switches let ad_steps and ad_inpaint_width/height through
    assert len(fields) == len(props) - 2 and fields["face_detail"] is True
