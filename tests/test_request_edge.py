"""Bad input at the request edge: each problem is a UserError naming the field, never another
exception (a 500), and limits hold for what the model actually reads.

Regressions of an adversarial probe of `app.py --demo`: huge integers (OverflowError), NaN and
infinities, lone surrogates and NUL in text, styles repeated to blow a prompt past
--max-prompt-chars, unbounded lists, and prompt weights that overflow to a black image.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
from PIL import Image

from webui.serving import extras
from webui.errors import UserError
from webui.prompts.prompt_parser import MAX_WEIGHT, parse_prompt
from webui.request import build_request
from webui.serving.service import Service
from webui.settings import Limits, Settings
from webui.validate import LIST_BOUNDS, number

HUGE = 10**400  # beyond the float range: float(HUGE) raises OverflowError
BASE = dict(prompt="portrait of a sailor", seed=7, steps=1, width=64, height=64, sampler_name="Euler",
            save_images=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    return Service.create(Settings(models_dir=root / "models", outputs_dir=root / "out", device="cpu", demo=True))


def limited(service, **limits) -> Service:
    return dataclasses.replace(service, settings=dataclasses.replace(
        service.settings, limits=dataclasses.replace(service.settings.limits, **limits)))


def refused(service, fields: dict, task: str = "txt2img") -> UserError:
    with pytest.raises(UserError) as e:
        service.prepare(fields, task)
    assert e.value.field, str(e.value)
    return e.value


# ---- item 6: numbers ---------------------------------------------------------------------------

NUMERIC = ["steps", "seed", "subseed", "subseed_strength", "cfg_scale", "width", "height", "batch_size", "n_iter",
           "clip_skip", "denoising_strength", "mask_blur", "resize_mode", "inpainting_fill", "hr_scale",
           "hr_second_pass_steps", "hr_resize_x", "hr_denoising_strength", "face_detail_steps",
           "face_detail_confidence", "face_detail_max_faces", "face_detail_padding", "face_detail_width",
           "face_detail_denoising_strength"]


@pytest.mark.parametrize("bad", [HUGE, -HUGE, float("inf"), float("nan"), "1e400", "nan", "9" * 400],
                         ids=["huge", "-huge", "inf", "nan", "1e400 text", "nan text", "400 digits text"])
@pytest.mark.parametrize("name", NUMERIC)
def test_every_numeric_field_refuses_overflow_and_nan(name, bad):
    with pytest.raises(UserError) as e:
        build_request({**BASE, "enable_hr": True, "face_detail": True, name: bad}, Limits())
    assert e.value.field == name


def test_the_coercion_itself():
    assert number("12", "steps", "steps", 1, 150, integer=True) == 12
    assert number(3.0, "steps", "steps", 1, 150, integer=True) == 3
    assert number(2**70, "x", "x") == float(2**70)
    for bad in (True, None, [], {}, "abc", HUGE, float("nan"), "-inf", 2.5):
        with pytest.raises(UserError, match="steps"):
            number(bad, "steps", "steps", 1, 150, integer=True)
    with pytest.raises(UserError, match="finite"):
        number(HUGE, "x", "x")  # no bounds: still no OverflowError
    with pytest.raises(UserError, match="401-digit"):
        number(HUGE, "x", "x", 0, 1)  # and the message does not print 400 digits


POSE_UNIT = {"enabled": True, "model": "demo-tiny-controlnet", "module": "none", "pose": "standing"}


@pytest.mark.parametrize("key", ["weight", "guidance_start", "guidance_end", "processor_res", "threshold_a",
                                 "control_mode", "resize_mode"])
@pytest.mark.parametrize("bad", [HUGE, float("nan"), float("inf")], ids=["huge", "nan", "inf"])
def test_controlnet_unit_numbers(key, bad):
    for fields in ({"controlnet_units": [{**POSE_UNIT, key: bad}]},
                   {"alwayson_scripts": {"controlnet": {"args": [{**POSE_UNIT, key: bad}]}}}):
        with pytest.raises(UserError, match=key) as e:
            build_request({**BASE, **fields}, Limits())
        assert e.value.field in ("controlnet_units", next(iter(fields)))


@pytest.mark.parametrize("bad", [HUGE, float("nan"), float("-inf"), "1e400"])
def test_ip_adapter_weight(bad):
    entry = {"model": "ip-adapter_sd15", "image": Image.new("RGB", (8, 8)), "weight": bad}
    with pytest.raises(UserError, match="weight") as e:
        build_request({**BASE, "ip_adapters": [entry]}, Limits())
    assert e.value.field == "ip_adapters"


@pytest.mark.parametrize("key,field", [("ad_confidence", "face_detail_confidence"),
                                       ("ad_denoising_strength", "face_detail_denoising_strength"),
                                       ("ad_mask_k_largest", "face_detail_max_faces"),
                                       ("ad_steps", "face_detail_steps"),
                                       ("ad_inpaint_width", "face_detail_width")])
@pytest.mark.parametrize("bad", [HUGE, "1e400", 2.0**60])
def test_adetailer_args(key, field, bad):
    unit = {"ad_model": "face_yolov8n.pt", "ad_use_steps": True, "ad_use_inpaint_width_height": True, key: bad}
    with pytest.raises(UserError) as e:
        build_request({**BASE, "alwayson_scripts": {"ADetailer": {"args": [True, False, unit]}}}, Limits())
    # The edge names the field the client sent (a >64-bit int); the parser names ours.
    assert e.value.field == ("alwayson_scripts" if bad is HUGE else field)


@pytest.mark.parametrize("kwargs,field", [({"scale": HUGE}, "upscaling_resize"),
                                          ({"scale": float("nan")}, "upscaling_resize"),
                                          ({"scale": 1e300}, "upscaling_resize"),
                                          ({"width": HUGE}, "upscaling_resize_w"),
                                          ({"width": float("inf")}, "upscaling_resize_w"),
                                          ({"height": float("nan")}, "upscaling_resize_h")])
def test_extras_upscale_numbers(kwargs, field):
    stub = types.SimpleNamespace(settings=Settings())  # refused before any work is queued
    with pytest.raises(UserError) as e:
        extras.upscale(stub, Image.new("RGB", (16, 16)), "Lanczos", **kwargs)
    assert e.value.field == field


# ---- images of ControlNet units and IP-Adapter entries -----------------------------------------

def _noisy_png_b64() -> str:
    import base64
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_unit_and_adapter_images_are_held_to_the_servers_upload_limit():
    png = _noisy_png_b64()  # about 12 kB
    small = Limits(max_upload_bytes=4_000)
    for fields, name in (({"controlnet_units": [{"model": "m", "image": png}]}, "controlnet_units"),
                         ({"ip_adapters": [{"model": "m", "image": png}]}, "ip_adapters")):
        build_request({**BASE, **fields}, Limits())  # within the default limit
        with pytest.raises(UserError, match="too large|limit") as e:
            build_request({**BASE, **fields}, small)
        assert e.value.field == name


# ---- item 7: text ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["a\ud800b", "\udfff", "a\x00b"], ids=["lone high", "lone low", "NUL"])
@pytest.mark.parametrize("name,wrap", [
    ("prompt", None), ("negative_prompt", None), ("hr_prompt", None), ("face_detail_prompt", None),
    ("sampler_name", None), ("sd_vae", None), ("translated_prompt", None), ("preset", None),
    ("styles", lambda s: [s]),
    ("controlnet_units", lambda s: [{**POSE_UNIT, "model": s}]),
    ("ip_adapters", lambda s: [{"model": s, "image": "x"}]),
    ("alwayson_scripts", lambda s: {"ADetailer": {"args": [{"ad_prompt": s}]}}),
    ("override_settings", lambda s: {s: 1}),
    ("some_unknown_field", None),
])
def test_text_that_is_not_unicode_is_refused_naming_the_field(service, name, wrap, bad):
    e = refused(service, {**BASE, name: wrap(bad) if wrap else bad})
    assert e.field == name
    assert ("surrogate" in str(e) or "NUL" in str(e)) and name in str(e)
    str(e).encode("utf-8")  # the message itself can go out as JSON


def test_a_whole_character_outside_the_bmp_is_fine(service):
    req, _ = service.prepare({**BASE, "prompt": "portrait \U0001F600 smiling"})
    assert "\U0001F600" in req.prompt


# ---- bounded lists ---------------------------------------------------------------------------

def test_repeated_styles_are_bounded(service):
    style = service.styles.names()[0]
    e = refused(service, {**BASE, "styles": [style] * 12_000})
    assert e.field == "styles" and "12000" in str(e)


@pytest.mark.parametrize("name", sorted(k for k in LIST_BOUNDS if "." not in k))
def test_every_list_field_has_a_bound(service, name):
    n = LIST_BOUNDS[name] + 1
    value = {f"k{i}": i for i in range(n)} if name in ("alwayson_scripts", "override_settings") else [None] * n
    e = refused(service, {**BASE, name: value}, "img2img" if name == "init_images" else "txt2img")
    assert e.field == name and str(LIST_BOUNDS[name]) in str(e)


def test_nested_list_bounds_and_depth(service):
    e = refused(service, {**BASE, "alwayson_scripts": {"controlnet": {"args": [{}] * 65}}})
    assert e.field == "alwayson_scripts" and "alwayson_scripts.controlnet.args" in str(e)
    deep: list = []
    for _ in range(40):
        deep = [deep]
    assert refused(service, {**BASE, "whatever": deep}).field == "whatever"


def test_styles_that_are_not_a_list(service):
    for bad in (5, {"a": 1}, [5], ["x" * 1000]):
        assert refused(service, {**BASE, "styles": bad}).field == "styles"


# ---- item 3: the prompt limit holds for what the model reads -----------------------------------

def test_a_style_chosen_twice_is_applied_once(service):
    style = service.styles.get("Gongbi")
    once, _ = service.prepare({**BASE, "styles": ["Gongbi"]})
    twice, _ = service.prepare({**BASE, "styles": ["Gongbi", "Gongbi", "gongbi", style.name_zh]})
    assert twice.prompt == once.prompt and twice.negative_prompt == once.negative_prompt
    assert twice.styles == ("Gongbi", "gongbi", style.name_zh)  # exact repeats dropped at the edge


def test_prompt_limit_applies_after_styles(service):
    svc = limited(service, max_prompt_chars=300)
    svc.prepare({**BASE, "prompt": "x" * 200})  # typed: within the limit
    e = refused(svc, {**BASE, "prompt": "x" * 200, "styles": ["Gongbi"]})
    assert e.field == "prompt" and "styles" in str(e) and "300" in str(e)
    e = refused(svc, {**BASE, "prompt": "x", "negative_prompt": "y" * 250, "styles": ["Gongbi"]})
    assert e.field == "negative_prompt"


def test_prompt_limit_applies_after_translation_and_preset(service):
    svc = limited(service, max_prompt_chars=300)
    e = refused(svc, {**BASE, "prompt": "画", "translated_prompt": "z" * 500, "translated_from": "画"})
    assert e.field == "prompt"
    e = refused(svc, {**BASE, "prompt": "x" * 200, "preset": "Studio Portrait", "styles": []})
    assert e.field == "prompt"


def test_face_prompt_limit_counts_each_prompt_placeholder(service):
    e = refused(service, {**BASE, "prompt": "x" * 9_000, "face_detail": True,
                          "face_detail_prompt": "[PROMPT] " * 1_000})
    assert e.field == "face_detail_prompt" and "[PROMPT]" in str(e)
    # Per face: [SEP] parts are separate prompts.
    service.prepare({**BASE, "prompt": "x" * 4_000, "face_detail": True, "face_detail_prompt": "[PROMPT][SEP][PROMPT]"})


# ---- item 12: prompt weights -------------------------------------------------------------------

@pytest.mark.parametrize("prompt", [
    "(word:" + "9" * 400 + ")",             # parses to inf
    "(word:-" + "9" * 400 + ")",
    "(" * 4_000 + "word" + ")" * 4_000,       # 1.1 ** 4000 overflows
    "((word:0):" + "9" * 400 + ")",          # 0 x inf
    "((word:" + "9" * 400 + "):0.5)",
])
def test_weights_are_clamped_with_a_warning(prompt):
    parsed = parse_prompt(prompt)
    (text, weight), = [s for s in parsed.segments if s[0].strip()]
    assert text == "word" and abs(weight) <= MAX_WEIGHT and weight == weight
    assert any("limited to" in w for w in parsed.warnings)


def test_lora_weight_is_clamped_with_a_warning():
    parsed = parse_prompt("<lora:x:" + "9" * 400 + "> <lora:y:-" + "9" * 400 + "> <lora:z:0.5>")
    assert parsed.loras == [("x", MAX_WEIGHT), ("y", -MAX_WEIGHT), ("z", 0.5)]
    assert sum("LoRA tag" in w for w in parsed.warnings) == 2


def test_sane_weights_are_untouched():
    parsed = parse_prompt("(a:1.5) ((b)) [c] (d:-1) (e:10)")
    assert parsed.warnings == []
    assert [w for _, w in parsed.segments if _.strip()] == pytest.approx([1.5, 1.21, 1 / 1.1, -1.0, 10.0])


def test_mean_restoration_cannot_overflow_half_precision():
    import torch

    from webui.prompts.prompt_encoder import _emphasis

    z = torch.ones(77, 8, dtype=torch.float16)
    # Within the parser's bounds, but the weighted mean is almost 0: rescaling it back to the
    # original mean would multiply by ~77,000 and overflow float16.
    weights = (10.0,) * 38 + (-10.0,) * 38 + (1e-3,)
    out = _emphasis(z, weights)
    assert torch.isfinite(out).all()
    assert torch.equal(out, (z.float() * torch.tensor(weights)[:, None]).half())  # weighted, not rescaled


def test_overflowing_weight_gives_a_picture_and_a_warning(service):
    req, _ = service.prepare({**BASE, "prompt": "(sailor:" + "9" * 400 + ") " + "(" * 2_000 + "hat" + ")" * 2_000})
    result = service.generate(req)
    assert any("limited to" in w for w in result.warnings)
    pixels = np.asarray(result.images[0])
    assert pixels.std() > 0  # not a flat (black) image from NaN embeddings
