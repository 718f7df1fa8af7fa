"""ControlNet on the img2img and inpaint tabs: their named endpoints take the units, "only
masked" inpaint crops the control map like the picture, and every "send to" (gallery, PNG
Info, History) puts an infotext's units back into the target tab's accordion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
# The same tiny ControlNet / IP-Adapter models and helpers as the engine tests.
from test_controlnet import edges_image, face_ref, gen, models_dir, px, service, unit  # noqa: E402,F401

from webui.engine.extensions import controlnet  # noqa: E402


def picture(size=(64, 64)) -> Image.Image:
    img = Image.new("RGB", size, (120, 90, 60))
    ImageDraw.Draw(img).ellipse((size[0] // 4, size[1] // 8, size[0] * 3 // 4, size[1] * 7 // 8), fill=(200, 160, 130))
    return img


def square_mask(size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4), fill=255)
    return mask


@pytest.fixture(scope="module")
def ui(service, launch_app):
    demo, url = launch_app(service)
    yield demo, url
    demo.close()


# ---- the /img2img and /inpaint endpoints -----------------------------------------------------


def test_img2img_and_inpaint_endpoints_take_controlnet_units(ui, service, tmp_path):
    from gradio_client import Client, handle_file

    _, url = ui
    client = Client(url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/img2img", "/inpaint"):
        params = {p["parameter_name"] for p in api[name]["parameters"]}
        assert {"controlnet_0_enabled", "controlnet_0_image", "controlnet_2_model", "controlnet_1_pose",
                "ip_adapter_model"} <= params, name
    picture((80, 64)).save(tmp_path / "in.png")
    square_mask((80, 64)).save(tmp_path / "mask.png")
    edges_image((80, 64)).save(tmp_path / "map.png")
    alpha = next(t for t in service.checkpoint_titles() if t.startswith("alpha"))
    common = dict(prompt="portrait", negative_prompt="", steps=2, cfg_scale=7, seed=5, width=64, height=64,
                  sampler_name="Euler", scheduler="Automatic", sd_model_checkpoint=alpha, denoising_strength=0.9)
    task_args = {
        "/img2img": dict(init_image=handle_file(str(tmp_path / "in.png"))),
        "/inpaint": dict(init_image=handle_file(str(tmp_path / "in.png")), mask=handle_file(str(tmp_path / "mask.png")),
                         inpaint_full_res=1),
    }
    for name, args in task_args.items():
        def run(**cn):
            gallery, info = client.predict(**common, **args, **cn, api_name=name)
            return px(Image.open(gallery[0]["image"]).convert("RGB")), info

        plain, plain_info = run()
        cn = dict(controlnet_0_enabled=True, controlnet_0_image=handle_file(str(tmp_path / "map.png")),
                  controlnet_0_model="tiny-cn", controlnet_0_module="none")
        zero, zero_info = run(**cn, controlnet_0_weight=0.0)
        strong, strong_info = run(**cn, controlnet_0_weight=1.5)
        assert "ControlNet" not in plain_info
        assert "ControlNet 0" in zero_info and "Weight: 0," in zero_info and "Weight: 1.5" in strong_info, name
        assert np.abs(plain - zero).max() <= 1, name  # weight 0 is the plain image
        assert np.abs(plain - strong).mean() > 1, name  # weight 1.5 steers it
        if name == "/inpaint":  # and only the masked part changes
            from webui.engine.tasks import blur_mask

            outside = np.asarray(blur_mask(square_mask((80, 64)), 4)) == 0
            assert np.abs(strong - px(picture((80, 64))))[outside].max() <= 1


def test_rest_img2img_inpaint_takes_alwayson_controlnet(ui, tmp_path):
    import base64
    import io

    import httpx

    _, url = ui

    def b64(img):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()

    body = dict(prompt="portrait", steps=2, width=64, height=64, seed=5, sampler_name="Euler",
                init_images=[b64(picture((80, 64)))], mask=b64(square_mask((80, 64))), inpaint_full_res=True,
                denoising_strength=0.9, override_settings={"sd_model_checkpoint": "alpha"},
                alwayson_scripts={"controlnet": {"args": [
                    {"enabled": True, "image": b64(edges_image((80, 64))), "module": "canny", "model": "tiny-cn",
                     "weight": 1.5, "guidance_start": 0.0, "guidance_end": 1.0}]}})
    r = httpx.post(url + "/sdapi/v1/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "ControlNet 0" in text and "Module: canny" in text and "Inpaint area: Only masked" in text


# ---- "only masked": the control map follows the crop -----------------------------------------


def test_only_masked_inpaint_crops_the_control_map_like_the_picture(service):
    region, original = (32, 24, 96, 72), (128, 96)  # the crop around the mask, of a 128x96 picture

    def seen(**kw):
        u = controlnet.parse_units([unit(resize_mode="Just Resize", **kw)])[0]
        return np.asarray(controlnet.control_image(u, 64, 48, Path("."), region, original)).astype(int)

    # The map covers the whole picture; the model sees the same crop of it as of the picture,
    # also when the map has another size (it is scaled to the picture first).
    crop = np.asarray(edges_image(original).crop(region)).astype(int)
    assert np.abs(seen(image=edges_image(original)) - crop).mean() < 2
    assert np.abs(seen(image=edges_image(original).resize((256, 192), Image.NEAREST)) - crop).mean() < 2
    # A pose is drawn over the whole picture and cropped the same way, not squeezed into the crop.
    from webui.imaging.poses import render_by_key

    pose = seen(image=None, pose="standing")
    assert np.abs(pose - np.asarray(render_by_key("standing", *original).crop(region)).astype(int)).mean() < 2
    assert np.abs(pose - np.asarray(render_by_key("standing", 64, 48)).astype(int)).mean() > 5
    # Through the engine: only-masked inpaint with a pose unit gives the input's size, and
    # the pixels outside the mask stay the input's.
    init, mask = picture(original), square_mask(original)
    r = gen(service, "inpaint", units=[unit(image=None, pose="standing", weight=1.5)], init_image=init, mask=mask,
            inpaint_full_res=1, inpaint_full_res_padding=8, denoising_strength=0.9, mask_blur=0)
    outside = np.asarray(mask) == 0
    assert r.images[0].size == original and np.abs(px(r.images[0]) - px(init))[outside].max() <= 1


# ---- "send to" restores the units ------------------------------------------------------------


def _event(demo, elem_id: str):
    """The event a button with `elem_id` triggers."""
    ids = {b._id for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id}
    (fn,) = [f for f in demo.fns.values() if any(t[0] in ids for t in f.targets)]
    return fn


def _by_elem(demo, outputs, values) -> dict:
    return {c.elem_id: (v.get("value") if isinstance(v, dict) else v) for c, v in zip(outputs, values)
            if getattr(c, "elem_id", None)}


def _widget(outputs, values, widget):
    (v,) = [v for c, v in zip(outputs, values) if c is widget]
    return v


@pytest.fixture(scope="module")
def two_unit_infotext(service) -> str:
    r = gen(service, units=[unit(module="canny", weight=0.6, guidance_start=0.1, guidance_end=0.8,
                                 control_mode="ControlNet is more important", resize_mode="Just Resize",
                                 threshold_a=50, threshold_b=150),
                            unit(model="tiny-cn-folder", image=None, pose="seated", weight=1.25)])
    return r.infotexts[0]


def _check_two_units(values_of, tab: str):
    """values_of(widget name) -> the update's value (None: left unchanged)."""
    assert values_of("controlnet_0_enabled") is True and values_of("controlnet_1_enabled") is True
    assert values_of("controlnet_2_enabled") is False  # not in the infotext: switched off
    assert (values_of("controlnet_0_module"), values_of("controlnet_0_model"), values_of("controlnet_0_weight"),
            values_of("controlnet_0_guidance_start"), values_of("controlnet_0_guidance_end"),
            values_of("controlnet_0_control_mode"), values_of("controlnet_0_resize_mode"),
            values_of("controlnet_0_threshold_a"), values_of("controlnet_0_threshold_b"),
            values_of("controlnet_0_pose")) == \
        ("canny", "tiny-cn", 0.6, 0.1, 0.8, "ControlNet is more important", "Just Resize", 50.0, 150.0, ""), tab
    assert (values_of("controlnet_1_module"), values_of("controlnet_1_model"), values_of("controlnet_1_weight"),
            values_of("controlnet_1_pose"), values_of("controlnet_1_control_mode")) == \
        ("none", "tiny-cn-folder", 1.25, "seated", "Balanced"), tab
    assert values_of("controlnet_0_image") is None  # the control image is not in an infotext


def _unit_widgets(demo, tab: str) -> dict:
    """The tab's accordion widgets by name: its endpoint's controlnet_* parameters."""
    from webui.ui.pnginfo import endpoint_controls

    widgets = {n: c for n, c in endpoint_controls(demo, tab).items() if n.startswith("controlnet_")}
    assert len(widgets) == 3 * 12 and all(c.elem_id is None or c.elem_id.startswith(tab) for c in widgets.values())
    return widgets


def _values_of(fn, values, widgets):
    def value(name):
        v = _widget(fn.outputs, values, widgets[name])
        return v.get("value") if isinstance(v, dict) else v
    return value


def test_gallery_send_to_restores_the_units_and_switches_the_rest_off(ui, two_unit_infotext, tmp_path):
    demo, _ = ui
    picture().save(tmp_path / "made.png")
    state = {"seeds": [1], "infotexts": [two_unit_infotext]}
    for source, target in (("txt2img", "img2img"), ("txt2img", "inpaint"), ("img2img", "inpaint")):
        fn = _event(demo, f"{source}_send_to_{target}")
        values = fn.fn([(str(tmp_path / "made.png"), "seed 1")], 0, state)
        _check_two_units(_values_of(fn, values, _unit_widgets(demo, target)), target)


def test_png_info_and_history_send_restore_the_units(ui, two_unit_infotext):
    demo, _ = ui
    fn = _event(demo, "pnginfo_send_txt2img")
    values = fn.fn(two_unit_infotext)
    _check_two_units(_values_of(fn, values, _unit_widgets(demo, "txt2img")), "PNG Info")
    for tab in ("txt2img", "img2img", "inpaint"):
        fn = _event(demo, f"history_send_to_{tab}")
        values = fn.fn({"image": "picked.png", "infotext": two_unit_infotext})
        _check_two_units(_values_of(fn, values, _unit_widgets(demo, tab)), f"History -> {tab}")


def test_send_to_warns_about_a_model_not_installed_and_leaves_it(ui, two_unit_infotext):
    demo, _ = ui
    fn = _event(demo, "pnginfo_send_txt2img")
    txt2img = _unit_widgets(demo, "txt2img")
    text = two_unit_infotext.replace("Model: tiny-cn-folder", "Model: control_v11p_sd15_openpose [cab727d4]")
    with pytest.warns(UserWarning, match="control_v11p_sd15_openpose"):
        values = fn.fn(text)
    got = {n: _widget(fn.outputs, values, txt2img[n]) for n in ("controlnet_1_model", "controlnet_1_enabled",
                                                                   "controlnet_0_model", "controlnet_1_weight")}
    assert got["controlnet_1_model"].get("value") is None  # left as it is (the dropdown cannot hold it)
    assert got["controlnet_1_enabled"]["value"] is True and got["controlnet_1_weight"]["value"] == 1.25
    assert got["controlnet_0_model"]["value"] == "tiny-cn"
    # A picture made without ControlNet switches every unit off.
    plain = two_unit_infotext.split(", ControlNet 0")[0]
    values = fn.fn(plain)
    assert [_widget(fn.outputs, values, txt2img[f"controlnet_{n}_enabled"])["value"] for n in range(3)] == \
        [False] * 3


def test_send_to_restores_the_ip_adapter_model_and_weight(ui, service):
    demo, _ = ui
    text = gen(service, ip_adapters=[{"model": "tiny-ip-sd1", "image": face_ref(), "weight": 0.45}]).infotexts[0]
    fn = _event(demo, "pnginfo_send_txt2img")
    txt2img = _values_of(fn, fn.fn(text), _ip_widgets(demo, "txt2img"))
    assert (txt2img("ip_adapter_model"), txt2img("ip_adapter_weight"), txt2img("ip_adapter_image")) == \
        ("tiny-ip-sd1", 0.45, None)  # the reference picture is not in the infotext: left as it is
    fn = _event(demo, "history_send_to_inpaint")
    inpaint = _values_of(fn, fn.fn({"image": "picked.png", "infotext": text}), _ip_widgets(demo, "inpaint"))
    assert (inpaint("ip_adapter_model"), inpaint("ip_adapter_weight")) == ("tiny-ip-sd1", 0.45)
    # A picture made without an adapter turns it off; one made with an adapter not installed here
    # leaves the choice as it is and says so.
    fn = _event(demo, "pnginfo_send_txt2img")
    plain = text.split(", IP-Adapter 0")[0]
    assert _values_of(fn, fn.fn(plain), _ip_widgets(demo, "txt2img"))("ip_adapter_model") == "None"
    with pytest.warns(UserWarning, match="ip-adapter-plus-face_sd15"):
        values = fn.fn(text.replace("Model: tiny-ip-sd1", "Model: ip-adapter-plus-face_sd15"))
    assert _values_of(fn, values, _ip_widgets(demo, "txt2img"))("ip_adapter_model") is None


def _ip_widgets(demo, tab: str) -> dict:
    from webui.ui.pnginfo import endpoint_controls

    return {n: c for n, c in endpoint_controls(demo, tab).items() if n.startswith("ip_adapter_")}
