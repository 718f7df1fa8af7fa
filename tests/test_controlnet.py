"""ControlNet units on tiny offline models, loaded through the real loading code: weight 0 is
the plain image, weight 1 changes it, folder and single file agree, the canny preprocessor,
poses as control maps, and clear errors for the wrong family or a missing preprocessor model."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from webui.engine.extensions import controlnet
from webui.errors import UserError
from webui.metadata.infotext import parse_infotext
from webui.serving.service import Service
from webui.settings import Settings


def build_tiny_controlnet(family: str, out: Path, name: str) -> None:
    """The tiny ControlNet (webui.models.tiny_models), saved as a diffusers folder and as one
    diffusers-layout .safetensors (how SDXL ControlNets are usually shipped)."""
    from safetensors.torch import save_file

    from webui.models.tiny_models import build_tiny_controlnet as build

    net = build(family)
    net.save_pretrained(out / f"{name}-folder")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"{name}.safetensors"))


def tiny_image_projection(variant: str, cross: int, enc_hidden: int, enc_proj: int) -> dict:
    """Random `image_proj` weights in the key layout of the real files: "base" (ip-adapter_sd15:
    linear + norm on the pooled image embedding), "plus" / "plus-face" (the Resampler: 16
    learned queries, 4 perceiver layers with 64-wide heads, on the encoder's penultimate
    hidden states) and "full-face" (an MLP on every hidden state)."""
    def r(*shape):
        return torch.randn(*shape) * 0.3

    def norm(prefix: str, n: int) -> dict:
        return {f"{prefix}.weight": torch.ones(n), f"{prefix}.bias": torch.zeros(n)}

    if variant == "base":
        return {"proj.weight": r(4 * cross, enc_proj), "proj.bias": torch.zeros(4 * cross), **norm("norm", cross)}
    if variant == "full-face":
        return {"proj.0.weight": r(enc_hidden, enc_hidden), "proj.0.bias": torch.zeros(enc_hidden),
                "proj.2.weight": r(cross, enc_hidden), "proj.2.bias": torch.zeros(cross), **norm("proj.3", cross)}
    dim, inner = 48, 64  # the Resampler's width (768 in SD 1.5 plus, 1280 in SDXL plus) and one 64-wide head
    sd = {"latents": r(1, 16, dim), "proj_in.weight": r(dim, enc_hidden), "proj_in.bias": torch.zeros(dim),
          "proj_out.weight": r(cross, dim), "proj_out.bias": torch.zeros(cross), **norm("norm_out", cross)}
    for i in range(4):
        p = f"layers.{i}"
        sd.update({**norm(f"{p}.0.norm1", dim), **norm(f"{p}.0.norm2", dim), f"{p}.0.to_q.weight": r(inner, dim),
                   f"{p}.0.to_kv.weight": r(2 * inner, dim), f"{p}.0.to_out.weight": r(dim, inner),
                   **norm(f"{p}.1.0", dim), f"{p}.1.1.weight": r(4 * dim, dim), f"{p}.1.3.weight": r(dim, 4 * dim)})
    return sd


def build_tiny_ip_adapter(family: str, folder: Path, variant: str = "base", name: str | None = None,
                          suffix: str = ".safetensors", encoder: str = "image_encoder", enc_hidden: int = 32) -> Path:
    """A tiny CLIP image encoder (diffusers folder `encoder`, written once) and a random
    IP-Adapter whose shapes fit the tiny UNet and that encoder, as .safetensors
    (image_proj.* / ip_adapter.*) or as the original .bin ({"image_proj": ..., "ip_adapter": ...})."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from webui.models.tiny_models import build_tiny_pipeline

    unet = build_tiny_pipeline(family).unet
    cross = unet.config.cross_attention_dim
    enc_cfg = CLIPVisionConfig(hidden_size=enc_hidden, intermediate_size=2 * enc_hidden, num_hidden_layers=2,
                               num_attention_heads=2, image_size=32, patch_size=8, projection_dim=enc_hidden // 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        if not (folder / encoder / "config.json").is_file():
            CLIPVisionModelWithProjection(enc_cfg).save_pretrained(folder / encoder)
        sd = {"image_proj": tiny_image_projection(variant, cross, enc_cfg.hidden_size, enc_cfg.projection_dim),
              "ip_adapter": {}}
        key_id = 1
        blocks = unet.config.block_out_channels
        for proc in unet.attn_processors:
            if not proc.endswith("attn2.processor"):
                continue
            if proc.startswith("mid_block"):
                hidden = blocks[-1]
            elif proc.startswith("up_blocks"):
                hidden = list(reversed(blocks))[int(proc[len("up_blocks.")])]
            else:
                hidden = blocks[int(proc[len("down_blocks.")])]
            sd["ip_adapter"][f"{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.5
            sd["ip_adapter"][f"{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.5
            key_id += 2
    path = folder / f"{name or f'tiny-ip-{family}'}{suffix}"
    if suffix == ".bin":
        torch.save(sd, path)
    else:
        save_file({f"{part}.{k}": v.contiguous() for part, d in sd.items() for k, v in d.items()}, str(path))
    return path


def sd1_models_dir(tiny_models, tmp_path_factory, name: str) -> Path:
    """A models folder with the tiny SD1 checkpoint "alpha" and the tiny ControlNet "tiny-cn"."""
    root = tmp_path_factory.mktemp(name)
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    (root / "ControlNet").mkdir()
    build_tiny_controlnet("sd1", root / "ControlNet", "tiny-cn")
    return root


def cpu_service(models_dir: Path, tmp_path_factory) -> Service:
    return Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu"))


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = sd1_models_dir(tiny_models, tmp_path_factory, "cn-models")
    shutil.copy(tiny_models["sdxl"].file, root / "Stable-diffusion" / "xl.safetensors")
    build_tiny_controlnet("sdxl", root / "ControlNet", "tiny-cn-xl")
    (root / "ipadapter").mkdir()
    build_tiny_ip_adapter("sd1", root / "ipadapter")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    return cpu_service(models_dir, tmp_path_factory)


def edges_image(size=(64, 64)) -> Image.Image:
    img = Image.new("RGB", size, "black")
    ImageDraw.Draw(img).rectangle((16, 16, 47, 47), fill="white")
    return img


def gen(svc, task="txt2img", units=(), model="alpha", **fields):
    base = dict(prompt="portrait of a woman", seed=99, steps=2, width=64, height=64, sampler_name="Euler",
                sd_model_checkpoint=model, save_images=False, controlnet_units=list(units))
    base.update(fields)
    return svc.generate(svc.request(base, task))


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def unit(**kw):
    d = dict(enabled=True, model="tiny-cn", module="none", image=edges_image(), weight=1.0)
    d.update(kw)
    return d


def test_weight_zero_is_plain_image_and_weight_one_changes_it(service):
    plain = gen(service).images[0]
    zero = gen(service, units=[unit(weight=0.0)]).images[0]
    one = gen(service, units=[unit(weight=1.0)]).images[0]
    assert np.abs(px(plain) - px(zero)).max() <= 1
    assert np.abs(px(plain) - px(one)).mean() > 2


def test_what_the_map_shows_steers_the_picture(service):
    square = gen(service, units=[unit(weight=1.5)]).images[0]
    moved = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(moved).rectangle((0, 0, 23, 23), fill="white")
    other = gen(service, units=[unit(weight=1.5, image=moved)]).images[0]
    again = gen(service, units=[unit(weight=1.5)]).images[0]
    assert np.abs(px(square) - px(again)).max() == 0
    assert np.abs(px(square) - px(other)).mean() > 1  # the same unit, another map: another picture


def test_folder_and_single_file_load_the_same_weights(service):
    a = gen(service, units=[unit(model="tiny-cn")]).images[0]
    b = gen(service, units=[unit(model="tiny-cn-folder")]).images[0]
    assert np.abs(px(a) - px(b)).max() <= 1


def test_infotext_records_each_unit(service):
    r = gen(service, units=[unit(), unit(model="tiny-cn-folder", module="canny", weight=0.5,
                                         guidance_start=0.1, guidance_end=0.8)])
    params = parse_infotext(r.infotexts[0])
    assert params["ControlNet 0"].startswith("Module: none, Model: tiny-cn [")
    one = params["ControlNet 1"]
    assert "Module: canny" in one and "Model: tiny-cn-folder" in one and "Weight: 0.5" in one
    assert "Guidance Start: 0.1" in one and "Guidance End: 0.8" in one
    assert "Resize Mode: Crop and Resize" in one


def test_img2img_and_inpaint_take_units_and_resize_the_map(service):
    init = Image.new("RGB", (64, 64), (120, 90, 60))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((8, 8, 56, 56), fill=255)
    other_size = edges_image((100, 40))  # resized by the unit's resize mode
    for task, extra in (("img2img", {}), ("inpaint", {"mask": mask})):
        base = gen(service, task, units=[unit(image=other_size, weight=0.0)], init_image=init,
                   denoising_strength=0.9, **extra).images[0]
        steered = gen(service, task, units=[unit(image=other_size, resize_mode="Resize and Fill")],
                      init_image=init, denoising_strength=0.9, **extra).images[0]
        assert steered.size == (64, 64)
        assert np.abs(px(base) - px(steered)).mean() > 1, task


def test_sdxl_controlnet_runs_on_sdxl(service):
    r = gen(service, units=[unit(model="tiny-cn-xl")], model="xl")
    assert r.images[0].size == (64, 64)


@pytest.mark.parametrize("model,cn", [("alpha", "tiny-cn-xl"), ("alpha", "tiny-cn-xl-folder"), ("xl", "tiny-cn")])
def test_controlnet_of_other_family_is_refused(service, model, cn):
    with pytest.raises(UserError, match="family"):
        gen(service, units=[unit(model=cn)], model=model)
    assert gen(service).images  # the server keeps working


def test_pose_unit_renders_the_library_pose(service):
    r = gen(service, units=[unit(image=None, pose="standing")])
    assert "Pose: standing" in r.infotexts[0]
    with pytest.raises(UserError, match="no_such_pose"):
        gen(service, units=[unit(image=None, pose="no_such_pose")])


def test_canny_finds_the_square_outline():
    out = np.asarray(controlnet.canny(edges_image(), 100, 200))
    assert out.shape == (64, 64, 3)
    on = out[..., 0] > 0
    assert on[14:18, 20:44].any() and on[46:50, 20:44].any()  # top and bottom sides
    assert not on[24:40, 24:40].any() and not on[:8].any()  # nothing inside or far away


def test_missing_preprocessor_model_names_the_file(service, models_dir, monkeypatch):
    from webui.models import mediapipe_models

    # OpenPose falls back on MediaPipe; where that is missing too, the error names the file.
    monkeypatch.setattr(mediapipe_models, "unavailable", lambda: "the MediaPipe detectors need mediapipe")
    with pytest.raises(UserError) as e:
        gen(service, units=[unit(module="openpose_full")])
    msg = str(e.value)
    assert "body_pose_model.pth" in msg and str(models_dir / "ControlNet" / "annotators") in msg


def test_unknown_model_and_bad_settings_are_user_errors(service):
    with pytest.raises(UserError, match="not found"):
        gen(service, units=[unit(model="nope")])
    with pytest.raises(UserError, match="guidance end"):
        service.request({"controlnet_units": [unit(guidance_start=0.6, guidance_end=0.5)]})
    with pytest.raises(UserError, match="at most 3"):
        service.request({"controlnet_units": [unit()] * 4})
    with pytest.raises(UserError, match="no control image"):
        service.request({"controlnet_units": [unit(image=None)]})
    with pytest.raises(UserError, match="preprocessor"):
        service.request({"controlnet_units": [unit(module="sharpen")]})


def test_disabled_units_cost_nothing(service):
    req = service.request({"controlnet_units": [unit(enabled=False), unit(model="None", image=None)]})
    assert req.controlnet_units == ()


def test_alwayson_scripts_args_as_the_a1111_extension_sends_them(service):
    buf = io.BytesIO()
    edges_image().save(buf, "PNG")
    args = [{"enabled": True, "image": base64.b64encode(buf.getvalue()).decode(), "module": "canny",
             "model": "tiny-cn [0123abcd]", "weight": 0.8, "guidance_start": 0.0, "guidance_end": 0.9,
             "resize_mode": "Just Resize", "control_mode": "ControlNet is more important",
             "processor_res": 512, "threshold_a": 50, "threshold_b": 150}]
    req = service.request({"prompt": "x", "alwayson_scripts": {"controlnet": {"args": args}}})
    (u,) = req.controlnet_units
    assert (u.module, u.model, u.weight, u.guidance_end, u.resize_mode, u.control_mode, u.threshold_a) == \
        ("canny", "tiny-cn [0123abcd]", 0.8, 0.9, 0, 2, 50.0)
    assert u.image.size == (64, 64)


def test_txt2img_endpoint_and_rest_api_take_units(service, launch_app):
    import httpx
    from gradio_client import Client

    demo, url = launch_app(service)
    try:
        client = Client(url, verbose=False)
        params = [p["parameter_name"] for p in
                  client.view_api(return_format="dict")["named_endpoints"]["/txt2img"]["parameters"]]
        assert "controlnet_0_model" in params and "controlnet_2_pose" in params and "ip_adapter_model" in params
        required = {p: "" for p in params if p.endswith("prompt")}
        alpha = next(t for t in service.checkpoint_titles() if t.startswith("alpha"))
        _, info, *_ = client.predict(**{**required, "prompt": "portrait"}, steps=2, width=64, height=64, seed=5,
                                     sampler_name="Euler", sd_model_checkpoint=alpha,
                                     controlnet_0_enabled=True, controlnet_0_pose="walking",
                                     controlnet_0_model="tiny-cn", controlnet_0_weight=0.7,
                                     api_name="/txt2img")
        assert "ControlNet 0" in info and "Pose: walking" in info and "Weight: 0.7" in info
        assert "IP-Adapter" not in info

        buf = io.BytesIO()
        edges_image().save(buf, "PNG")
        png = base64.b64encode(buf.getvalue()).decode()
        body = dict(prompt="portrait", steps=2, width=64, height=64, seed=5, sampler_name="Euler",
                    override_settings={"sd_model_checkpoint": "alpha"},
                    alwayson_scripts={"controlnet": {"args": [
                        {"enabled": True, "image": png, "module": "canny", "model": "tiny-cn", "weight": 0.9,
                         "guidance_start": 0.0, "guidance_end": 1.0, "resize_mode": 1, "control_mode": 0,
                         "processor_res": -1, "threshold_a": -1, "threshold_b": -1},
                        {"enabled": False, "image": None, "model": "None"}]}},
                    ip_adapters=[{"model": "tiny-ip-sd1", "image": png, "weight": 0.5}])
        r = httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=300)
        assert r.status_code == 200, r.text
        text = json.loads(r.json()["info"])["infotexts"][0]
        assert "ControlNet 0" in text and "Module: canny" in text and "IP-Adapter 0" in text
        body["alwayson_scripts"]["controlnet"]["args"][0]["model"] = "tiny-cn-xl"  # wrong family: a 4xx
        bad = httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=300)
        assert 400 <= bad.status_code < 500 and "family" in bad.text
    finally:
        demo.close()


def test_infotext_restores_the_units(service):
    from webui.metadata.infotext import infotext_to_fields

    r = gen(service, units=[unit(image=None, pose="seated", weight=0.6, guidance_end=0.7,
                                 control_mode="ControlNet is more important", resize_mode="Just Resize")])
    fields = infotext_to_fields(r.infotexts[0])
    (restored,) = fields["controlnet_units"]
    assert not any(k.startswith("ControlNet") for k in fields["extra"])
    again = service.request({"controlnet_units": [restored]})
    (u,) = again.controlnet_units
    assert (u.pose, u.weight, u.guidance_end, u.control_mode, u.resize_mode) == ("seated", 0.6, 0.7, 2, 0)
    assert u.model.startswith("tiny-cn [")  # "name [hash]", found again by name
    # The restored unit reproduces the image.
    same = gen(service, units=[restored]).images[0]
    assert np.abs(px(same) - px(r.images[0])).max() <= 1


def face_ref() -> Image.Image:
    img = Image.new("RGB", (48, 48), (200, 150, 120))
    ImageDraw.Draw(img).ellipse((10, 6, 38, 42), fill=(90, 60, 40))
    return img


def test_ip_adapter_weight_steers_and_the_unet_is_put_back(service):
    plain = gen(service).images[0]
    zero = gen(service, ip_adapters=[{"model": "tiny-ip-sd1", "image": face_ref(), "weight": 0.0}]).images[0]
    one = gen(service, ip_adapters=[{"model": "tiny-ip-sd1", "image": face_ref(), "weight": 1.0}])
    assert np.abs(px(plain) - px(zero)).max() <= 1
    assert np.abs(px(plain) - px(one.images[0])).mean() > 2
    assert "IP-Adapter 0" in parse_infotext(one.infotexts[0])
    assert np.abs(px(gen(service).images[0]) - px(plain)).max() == 0  # no adapter left in the shared UNet


def test_ip_adapter_together_with_controlnet(service):
    cn_only = gen(service, units=[unit()]).images[0]
    both = gen(service, units=[unit()], ip_adapters=[{"model": "tiny-ip-sd1", "image": face_ref()}]).images[0]
    assert np.abs(px(cn_only) - px(both)).mean() > 2


def test_ip_adapter_bad_input(service):
    with pytest.raises(UserError, match="family"):
        gen(service, model="xl", ip_adapters=[{"model": "tiny-ip-sd1", "image": face_ref()}])
    with pytest.raises(UserError, match="not found"):
        gen(service, ip_adapters=[{"model": "nope", "image": face_ref()}])
    with pytest.raises(UserError, match="reference image"):
        service.request({"ip_adapters": [{"model": "tiny-ip-sd1"}]})
    assert gen(service, model="xl").images  # the SDXL UNet is untouched after the refusal


def test_requests_with_units_never_share_a_batch(service):
    from webui.serving.gpu_queue import batch_key

    plain = service.request(dict(prompt="a", width=64, height=64))
    assert batch_key(plain) is not None
    assert batch_key(service.request(dict(prompt="a", width=64, height=64, controlnet_units=[unit()]))) is None
    assert batch_key(service.request(dict(prompt="a", width=64, height=64,
                                          ip_adapters=[{"model": "tiny-ip-sd1", "image": face_ref()}]))) is None


HIRES = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", hr_denoising_strength=0.7, hr_second_pass_steps=2)


def test_hires_fix_keeps_the_units(service):
    plain = gen(service, **HIRES).images[0]
    zero = gen(service, units=[unit(weight=0.0)], **HIRES).images[0]
    strong = gen(service, units=[unit(weight=1.5)], **HIRES)
    assert plain.size == strong.images[0].size == (96, 96)
    assert np.abs(px(plain) - px(zero)).max() <= 1
    assert np.abs(px(plain) - px(strong.images[0])).mean() > 2
    assert "ControlNet 0" in strong.infotexts[0] and "Hires upscale: 1.5" in strong.infotexts[0]


@pytest.mark.parametrize("upscaler", ["Lanczos", "Latent"])
def test_hires_pass_itself_follows_the_unit(service, upscaler):
    """The same first-pass latents into the hires pass: only the pass's ControlNet differs."""
    from webui.engine.stages import hires
    from webui.engine import runner
    from webui.engine.jobs import Job

    manager = service.manager
    model = manager.ensure_model("alpha")
    out = {}
    for weight in (None, 0.0, 1.5):
        units = [] if weight is None else [unit(weight=weight, module="canny")]
        req = service.request(dict(prompt="portrait", seed=3, steps=2, width=64, height=64, sampler_name="Euler",
                                   controlnet_units=units, **{**HIRES, "hr_upscaler": upscaler}))
        ctx = runner.new_context(manager, model, [req], [Job()])
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.3  # a latent's usual scale
        out[weight] = hires.run(ctx, latents, [3])[0]
    assert out[None].size == (96, 96)
    assert np.abs(px(out[None]) - px(out[0.0])).max() <= 1
    assert np.abs(px(out[None]) - px(out[1.5])).mean() > 2


def test_hub_id_loads_from_the_local_cache(service, models_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--someone--tiny-cn"
    shutil.copytree(models_dir / "ControlNet" / "tiny-cn-folder", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from_hub = gen(service, units=[unit(model="someone/tiny-cn")]).images[0]
    from_folder = gen(service, units=[unit(model="tiny-cn-folder")]).images[0]
    assert np.abs(px(from_hub) - px(from_folder)).max() == 0
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        gen(service, units=[unit(model="someone/not-downloaded")])
