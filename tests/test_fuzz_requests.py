"""Property-based fuzzing of the request edge (hypothesis).

(a) Service.prepare / build_request over arbitrary JSON-like values for every request field,
    ControlNet units, IP-Adapter entries, alwayson_scripts and override_settings included:
    either a request comes back or a UserError naming a field -- never another exception.
(b) A real running server (tiny demo model): arbitrary JSON bodies to the /sdapi/v1 routes get
    200 or a 4xx whose JSON names the field (our UserError `field`, or FastAPI's `detail[].loc`),
    never a 5xx; a normal request still works afterwards.

The server's limits are small (64-128 px, 3 steps), so a generated body that happens to be valid
runs in a moment; derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from webui.errors import UserError
from webui.request import TASKS, GenerationRequest, build_request
from webui.engine.samplers import AVAILABLE_SAMPLERS, SCHEDULE_TYPES
from webui.serving.service import Service
from webui.settings import Limits, Settings

API = "/sdapi/v1"
FAST = dict(max_width=128, max_height=128, max_pixels=128 * 128, max_steps=3, max_batch_size=2, max_n_iter=2)
CHEAP = dict(prompt="a sailor", steps=1, width=64, height=64, sampler_name="Euler", seed=1)


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def _png_b64(size=(64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 80, 60)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


PNG = _png_b64()

# ---- strategies ------------------------------------------------------------------------------

# Text with control characters and lone surrogates, plus strings the parsers look for.
SPECIAL_TEXT = ["", " ", "nan", "inf", "-1", "1e400", "9" * 400, "0x10", "true", "None", "Euler", "Euler a",
                "DPM++ 2M Karras", "Karras", "Automatic", "Latent", "Lanczos", "Gongbi", "Studio Portrait",
                "[PROMPT]", "[SEP]", "(x:" + "9" * 400 + ")", "((((a))))", "<lora:x:1e9>", "画像", "canny",
                "openpose", "demo-tiny-controlnet", "demo-tiny-sd15", "largest", "haar", "crop and resize",
                "data:image/png;base64,", PNG, "\ud800", "a\x00b", "\U0001F600"]
text = st.one_of(st.sampled_from(SPECIAL_TEXT),
                 st.text(st.characters(categories=["Cs", "Cc", "L", "N", "P", "S", "Zs"]), max_size=30))
numbers = st.one_of(
    st.integers(-5, 3000),
    st.integers(-2**1100, 2**1100),  # beyond the float range, still readable JSON
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 2, 64, 8.0, 2**32, 2**63, 1e308, -0.0]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)), max_leaves=12)

REQUEST_FIELDS = [f.name for f in dataclasses.fields(GenerationRequest) if f.name != "task"]
EXTRA_FIELDS = ["preset", "translated_prompt", "translated_negative_prompt", "translated_from", "override_settings",
                "alwayson_scripts", "sampler_index", "restore_faces", "tiling", "send_images", "init_images"]
UNIT_KEYS = ["enabled", "model", "module", "image", "input_image", "pose", "weight", "guidance_start",
             "guidance_end", "control_mode", "resize_mode", "processor_res", "threshold_a", "threshold_b"]
AD_KEYS = ["ad_model", "ad_prompt", "ad_negative_prompt", "ad_confidence", "ad_mask_k_largest", "ad_mask_blur",
           "ad_denoising_strength", "ad_inpaint_only_masked_padding", "ad_use_steps", "ad_steps",
           "ad_use_inpaint_width_height", "ad_inpaint_width", "ad_inpaint_height"]


def _entries(keys):
    return st.dictionaries(st.sampled_from(keys) | text, scalars | json_values, max_size=len(keys))


images = st.sampled_from([PNG, "data:image/png;base64," + PNG, "junk", {"image": PNG, "mask": None}]) | scalars
unit = st.one_of(_entries(UNIT_KEYS), st.fixed_dictionaries(
    {"model": st.sampled_from(["demo-tiny-controlnet", "x"]), "pose": st.sampled_from(["standing", "", "zz"]),
     "image": images},
    optional={k: scalars for k in UNIT_KEYS if k not in ("model", "pose", "image")}))
ip_adapter = _entries(["model", "image", "weight", "enabled"]) | st.fixed_dictionaries(
    {"model": st.sampled_from(["ip-adapter_sd15", ""]) | text, "image": images}, optional={"weight": scalars})
alwayson = st.dictionaries(
    st.sampled_from(["controlnet", "ControlNet", "ADetailer", "adetailer", "other"]) | text,
    st.one_of(st.fixed_dictionaries({"args": st.lists(unit | scalars, max_size=4)}),
              st.fixed_dictionaries({"args": st.lists(st.booleans() | _entries(AD_KEYS), max_size=3)}),
              json_values),
    max_size=3)
override = st.dictionaries(st.sampled_from(["sd_model_checkpoint", "CLIP_stop_at_last_layers", "sd_vae"]) | text,
                           scalars, max_size=4)
NESTED = {
    "controlnet_units": st.lists(unit, max_size=4) | json_values,
    "ip_adapters": st.lists(ip_adapter, max_size=3) | json_values,
    "alwayson_scripts": alwayson | json_values,
    "override_settings": override | json_values,
    "styles": st.lists(text, max_size=4) | json_values,
    "init_images": st.lists(st.sampled_from([PNG, "junk", ""]) | text, max_size=3) | json_values,
}


def _value(name: str):
    return NESTED.get(name, st.one_of(scalars, json_values))


fields_strategy = st.dictionaries(
    st.sampled_from(REQUEST_FIELDS + EXTRA_FIELDS), st.none(), max_size=8
).flatmap(lambda keys: st.fixed_dictionaries({k: _value(k) for k in keys}))
# Sometimes a field name the app does not know, with anything in it.
bodies = st.tuples(fields_strategy, st.dictionaries(text, json_values, max_size=2)).map(
    lambda pair: {**pair[1], **pair[0]})


# Values each field takes when it is used as meant: bodies built from these mostly pass the
# parser, so the fuzzing reaches generation (prompt syntax, hires, face pass, ControlNet).
PROMPT_TOKENS = list("()[]:|\\<>, .-15") + ["BREAK", "word", "<lora:x:", "[PROMPT]", "[SEP]", "9" * 40, "\n"]
prompts = st.one_of(text, st.lists(st.sampled_from(PROMPT_TOKENS), max_size=25).map("".join))
valid_unit = st.fixed_dictionaries({
    "enabled": st.just(True), "model": st.just("demo-tiny-controlnet"),
    "image": st.sampled_from([PNG, {"image": PNG}]), "module": st.sampled_from(["none", "canny"])},
    optional={"weight": st.floats(0, 2), "guidance_start": st.floats(0, 0.4), "guidance_end": st.floats(0.5, 1),
              "control_mode": st.sampled_from([0, 1, 2, "Balanced"]), "resize_mode": st.sampled_from([0, 1, 2]),
              "processor_res": st.sampled_from([-1, 64, 512]), "threshold_a": st.floats(0, 255)})
PLAUSIBLE = {
    "prompt": prompts, "negative_prompt": prompts, "steps": st.integers(1, 3),
    "width": st.sampled_from([64, 128]), "height": st.sampled_from([64, 72]),
    "sampler_name": st.sampled_from(AVAILABLE_SAMPLERS), "scheduler": st.sampled_from(SCHEDULE_TYPES),
    "seed": st.integers(-1, 2**32 - 1), "subseed_strength": st.floats(0, 1), "cfg_scale": st.floats(1, 30),
    "batch_size": st.integers(1, 2), "n_iter": st.integers(1, 2), "clip_skip": st.integers(1, 3),
    "styles": st.lists(st.sampled_from(["Gongbi", "Studio Lighting", "Watercolor", "工笔"]), max_size=3),
    "enable_hr": st.booleans(), "hr_scale": st.sampled_from([1.0, 1.25, 2.0]),
    "hr_second_pass_steps": st.integers(0, 2),
    "hr_upscaler": st.sampled_from(["Latent", "Latent (nearest)", "Lanczos", "Nearest"]), "hr_prompt": prompts,
    "hr_sampler_name": st.sampled_from(["Use same sampler", "Euler"]), "denoising_strength": st.floats(0, 1),
    "face_detail": st.booleans(), "face_detail_prompt": prompts, "face_detail_steps": st.integers(0, 2),
    "controlnet_units": st.lists(valid_unit, max_size=1), "preset": st.sampled_from(["Studio Portrait", "None"]),
    "alwayson_scripts": st.fixed_dictionaries({"controlnet": st.fixed_dictionaries(
        {"args": st.lists(valid_unit, max_size=1)})}),
}
plausible = st.fixed_dictionaries({}, optional=PLAUSIBLE)


# ---- (a) the parser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(models_dir=root / "models", outputs_dir=root / "out", device="cpu", demo=True,
                         limits=Limits(**FAST))
    svc = Service.create(settings_)
    yield svc
    svc.close()


PIL_VALUES = st.sampled_from([None, Image.new("RGB", (64, 64)), Image.new("L", (32, 48)), "junk", 5])


@_settings(300)
@given(fields=bodies, task=st.sampled_from(TASKS), init=PIL_VALUES, mask=PIL_VALUES,
       base=st.sampled_from([True, True, True, False]))
def test_prepare_returns_a_request_or_a_user_error_naming_a_field(service, fields, task, init, mask, base):
    fields = {**(CHEAP if base else {}), **fields, "init_image": init, "mask": mask}
    for parse in (lambda: service.prepare(fields, task), lambda: build_request(fields, service.settings.limits, task)):
        try:
            parse()
        except UserError as e:
            assert isinstance(e.field, str) and e.field, f"no field for {e!r}"
            str(e).encode("utf-8")  # the message can be sent as JSON


# ---- (b) the REST API --------------------------------------------------------------------------

def _names_a_field(r: httpx.Response) -> bool:
    body = r.json()
    if body.get("error") == "UserError":
        return isinstance(body.get("field"), str) and bool(body["field"])
    detail = body.get("detail")
    return isinstance(detail, list) and bool(detail) and all(d.get("loc") for d in detail)


def _post(http, path: str, body) -> httpx.Response:
    data = json.dumps(body)  # NaN, Infinity and "\ud800" escapes: what Python's JSON reader takes
    return http.post(path, content=data, headers={"content-type": "application/json"})


def check(http, path: str, body) -> None:
    r = _post(http, path, body)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code != 200:
        assert _names_a_field(r), r.text[:500]


# Mostly a valid cheap request with some plausible and a few arbitrary fields; sometimes anything.
cheap_bodies = st.one_of(
    bodies,
    st.tuples(plausible, st.dictionaries(st.sampled_from(REQUEST_FIELDS + EXTRA_FIELDS), st.none(), max_size=2)
              .flatmap(lambda keys: st.fixed_dictionaries({k: _value(k) for k in keys})))
    .map(lambda p: {**CHEAP, "send_images": False, **p[0], **p[1]}),
    plausible.map(lambda p: {**CHEAP, "send_images": False, **p}),
)


@_settings(150)
@given(body=cheap_bodies)
def test_txt2img_bodies(http, body):
    check(http, f"{API}/txt2img", body)


@_settings(100)
@given(body=cheap_bodies,
       init=st.sampled_from([[PNG], [PNG], [PNG, "junk"]]) | st.lists(st.sampled_from([PNG, "junk"]) | text)
       | json_values,
       mask=st.sampled_from([None, None, PNG, "x"]) | json_values)
def test_img2img_bodies(http, body, init, mask):
    check(http, f"{API}/img2img", {**body, "init_images": init, "mask": mask})


@_settings(60)
@given(body=st.one_of(json_values, st.dictionaries(st.sampled_from(["image"]) | text, json_values, max_size=3),
                      st.fixed_dictionaries({"image": st.sampled_from([PNG, "data:image/png;base64," + PNG]) | text})))
def test_png_info_bodies(http, body):
    check(http, f"{API}/png-info", body)


@_settings(60)
@given(body=st.one_of(json_values, override, st.dictionaries(text, json_values, max_size=3)),
       path=st.sampled_from(["options", "interrupt", "skip"]))
def test_other_bodies(http, body, path):
    check(http, f"{API}/{path}", body)


UNREADABLE = ['{"steps": NaN}', '{"seed": 1e400}', '{"prompt": "\\ud800"}', '[NaN]', '{"x\\ud800": 1}',
              '{"prompt": "a\\u0000"}', '{"a": ' + "[" * 3000 + "]" * 3000 + "}", '{"seed": ' + "9" * 5000 + "}"]


@pytest.mark.parametrize("path", ["txt2img", "img2img", "png-info", "options", "interrupt"])
def test_bodies_python_reads_but_could_not_answer(http, path):
    """Regressions: each was a 500 (FastAPI's 422, or the echo of the request, could not encode
    the value) or a 400 naming nothing."""
    for raw in UNREADABLE + (['{"cfg_scale": ' + "9" * 400 + "}"] if "2img" in path else []):
        r = http.post(f"{API}/{path}", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and _names_a_field(r), (raw[:40], r.status_code, r.text[:300])


def test_server_still_serves(http):
    r = _post(http, f"{API}/txt2img", {**CHEAP, "steps": 2})
    assert r.status_code == 200, r.text[:500]
    assert len(r.json()["images"]) == 1
    info = json.loads(r.json()["info"])
    assert all(math.isfinite(s) for s in info["all_seeds"])
