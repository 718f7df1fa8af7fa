"""Characters: saved folders (character.json + references), zip export/import of untrusted files,
and their expansion at the request edge into plain A1111 fields -- the same pixels as the
hand-written prompt, LoRA tag and IP-Adapter unit. Tiny offline models, 64x64, 1 step."""

from __future__ import annotations

import base64
import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from test_controlnet import build_tiny_ip_adapter, face_ref
from webui.errors import UserError
from webui.metadata.infotext import infotext_to_fields
from webui.metadata.infotext_syntax import build_infotext, parse_infotext
from webui.prompts import character_files
from webui.serving.service import Service
from webui.settings import Settings

BASE = dict(prompt="portrait of a woman", negative_prompt="blurry", seed=77, steps=1, width=64, height=64,
            sampler_name="Euler", save_images=False)
MIRA = dict(name="Mira", trigger_words="mira woman", prompt="freckles", negative_prompt="lowres",
            loras=[{"name": "face", "weight": 0.8}], ip_adapter_model="tiny-ip-sd1", ip_adapter_weight=0.7,
            notes="red coat")
HAND = dict(prompt="portrait of a woman, mira woman, freckles, <lora:face:0.8>", negative_prompt="blurry, lowres")


@pytest.fixture(scope="module")
def models(tiny_models, tiny_loras, tmp_path_factory):
    root = tmp_path_factory.mktemp("char-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    (root / "Lora").mkdir()
    shutil.copy(tiny_loras["face"][0], root / "Lora" / "face.safetensors")
    (root / "ipadapter").mkdir()
    build_tiny_ip_adapter("sd1", root / "ipadapter")
    return root


def make_service(models, characters_dir, tmp_path_factory) -> Service:
    return Service.create(Settings(models_dir=models, outputs_dir=tmp_path_factory.mktemp("out"),
                                   characters_dir=characters_dir, device="cpu"))


@pytest.fixture(scope="module")
def service(models, tmp_path_factory):
    svc = make_service(models, tmp_path_factory.mktemp("characters"), tmp_path_factory)
    svc.save_character(MIRA, [face_ref()])
    yield svc
    svc.close()


def pixels(svc, **fields):
    result = svc.generate(svc.request({**BASE, **fields}))
    return np.asarray(result.images[0].convert("RGB")), result.infotexts[0]


@pytest.fixture(scope="module")
def hand_written(service):
    return pixels(service, **HAND, ip_adapters=[{"model": "tiny-ip-sd1", "image": face_ref(), "weight": 0.7}])


def test_a_character_gives_the_pixels_of_the_hand_written_fields(service, hand_written):
    got, info = pixels(service, characters=["Mira"])
    want, want_info = hand_written
    assert np.array_equal(got, want)
    parsed = parse_infotext(info)
    assert parsed["Character"] == "Mira" and "Lora hashes" in parsed and "IP-Adapter 0" in parsed
    assert parsed["Prompt"] == HAND["prompt"] and parsed["Negative prompt"] == HAND["negative_prompt"]
    # without the character the picture differs (the test can fail)
    assert not np.array_equal(pixels(service)[0], want)


def test_the_rest_api_takes_characters(service, hand_written):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api.routes import attach_api

    app = FastAPI()
    attach_api(app, service)
    with TestClient(app) as client:
        r = client.post("/sdapi/v1/txt2img", json={**BASE, "characters": ["Mira"]})
        assert r.status_code == 200, r.text
        img = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB")
        assert np.array_equal(np.asarray(img), hand_written[0])
        assert "Character: Mira" in json.loads(r.json()["info"])["infotexts"][0]
        bad = client.post("/sdapi/v1/txt2img", json={**BASE, "characters": ["Nobody"]})
        assert 400 <= bad.status_code < 500 and "Nobody" in bad.text


def test_an_infotext_sent_back_is_not_expanded_twice(service, hand_written):
    fields = infotext_to_fields(pixels(service, characters=["Mira"])[1])
    assert fields["characters"] == ["Mira"]
    again = service.request({**BASE, "prompt": fields["prompt"], "negative_prompt": fields["negative_prompt"],
                             "characters": fields["characters"], "styles": []})
    assert again.prompt == HAND["prompt"] and again.negative_prompt == HAND["negative_prompt"]
    assert len(again.ip_adapters) == 1


def test_several_characters_round_trip_through_the_infotext(service):
    service.save_character(dict(name="Tom", trigger_words="tom man"))
    req = service.request({**BASE, "characters": ["Mira", "Tom"]})
    assert req.prompt == HAND["prompt"] + ", tom man"
    assert ("Character", "Mira, Tom") in req.extra_params
    text = build_infotext(req.prompt, req.negative_prompt, {"Steps": 1, "Seed": 77, "Sampler": "Euler", **dict(req.extra_params)})
    assert 'Character: "Mira, Tom"' in text
    assert infotext_to_fields(text)["characters"] == ["Mira", "Tom"]
    again = service.request({**BASE, "prompt": req.prompt, "negative_prompt": req.negative_prompt,
                             "characters": ["Mira", "Tom"]})
    assert again.prompt == req.prompt


def test_saved_characters_survive_a_restart_and_an_export_import(service, models, tmp_path_factory, hand_written):
    restarted = make_service(models, service.settings.characters_dir, tmp_path_factory)
    try:
        assert restarted.character("Mira").notes == "red coat"
        assert np.array_equal(pixels(restarted, characters=["Mira"])[0], hand_written[0])
    finally:
        restarted.close()
    data = service.export_character("Mira")
    fresh = make_service(models, tmp_path_factory.mktemp("fresh-characters"), tmp_path_factory)
    try:
        assert fresh.import_character(data).name == "Mira"
        assert np.array_equal(pixels(fresh, characters=["Mira"])[0], hand_written[0])
        with pytest.raises(UserError, match="already exists"):
            fresh.import_character(data)
    finally:
        fresh.close()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def _json(**kw) -> bytes:
    return json.dumps({"name": "Eve", **kw}).encode()


@pytest.mark.parametrize("name", ["../evil", "a/b", "c:\\x", "x\\y", "a,b", ".hidden", ""])
def test_a_name_with_path_characters_is_refused(service, name):
    with pytest.raises(UserError) as e:
        service.save_character(dict(name=name))
    assert e.value.field == "name"
    assert not any(p.name not in ("Mira", "Tom") for p in service.settings.characters_dir.iterdir())


def test_untrusted_zips_are_refused(service, tmp_path, monkeypatch):
    store = character_files.CharacterStore(tmp_path / "chars")
    with pytest.raises(UserError, match="outside its folder"):
        store.import_zip(_zip({"character.json": _json(), "../evil.png": b"x"}))
    with pytest.raises(UserError, match="outside its folder"):
        store.import_zip(_zip({"Eve/../../character.json": _json()}))
    bomb = _zip({"character.json": _json(), "ref1.png": b"\0" * (65 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    with pytest.raises(UserError, match="unpacks to more than"):
        store.import_zip(bomb)
    with pytest.raises(UserError, match="unknown key"):
        store.import_zip(_zip({"character.json": _json(script="rm -rf")}))
    with pytest.raises(UserError, match="not a readable image"):
        store.import_zip(_zip({"character.json": _json(images=["ref1.png"], ip_adapter_model="m"),
                               "ref1.png": b"not a png"}))
    with pytest.raises(UserError, match="not a zip"):
        store.import_zip(b"hello")
    assert not (tmp_path / "chars").exists() or not any((tmp_path / "chars").iterdir())
    # a central directory that lies about the unpacked size is caught while reading
    monkeypatch.setattr(character_files, "MAX_UNPACKED_BYTES", 1000)
    lying = bytearray(_zip({"character.json": _json(notes="n" * 5000)}))
    at = lying.index(b"PK\x01\x02") + 24  # the entry's uncompressed size
    lying[at:at + 4] = (100).to_bytes(4, "little")
    with pytest.raises(UserError, match="cannot be read|unpacks to more than"):
        store.import_zip(bytes(lying))
    assert not (tmp_path / "chars").exists() or not any((tmp_path / "chars").iterdir())


def test_a_missing_lora_or_image_warns_and_still_generates(service):
    service.save_character(dict(name="Ghost", trigger_words="ghost", loras=[{"name": "gone", "weight": 1}],
                                ip_adapter_model="tiny-ip-sd1"), [face_ref()])
    (service.settings.characters_dir / "Ghost" / "ref1.png").unlink()
    req, notes = service.prepare({**BASE, "characters": ["Ghost"]})
    assert any("'gone'" in n and "ref1.png" in n for n in notes)
    assert req.ip_adapters == () and "<lora:gone:1>" in req.prompt
    assert service.generate(req).images


def test_an_unknown_character_is_a_user_error_naming_characters(service, tmp_path):
    with pytest.raises(UserError) as e:
        service.request({**BASE, "characters": ["Nobody"]})
    assert e.value.field == "characters" and "Nobody" in str(e.value)
    # a folder linked in from elsewhere is not a character
    shutil.copytree(service.settings.characters_dir / "Mira", tmp_path / "Elsewhere")
    (service.settings.characters_dir / "Linked").symlink_to(tmp_path / "Elsewhere")
    try:
        with pytest.raises(UserError, match="Unknown character 'Linked'"):
            service.request({**BASE, "characters": ["Linked"]})
        assert "Linked" not in service.characters()
    finally:
        (service.settings.characters_dir / "Linked").unlink()


def test_png_info_send_restores_the_character_choice():
    from webui.ui.pnginfo import send_fields

    line = "Steps: 1, Sampler: Euler, Seed: 7, Size: 64x64"
    assert send_fields(f'portrait\n{line}, Character: "Mira, Tom"')["characters"] == ["Mira", "Tom"]
    assert send_fields(f"portrait\n{line}")["characters"] == []  # made without: the choice is cleared


def test_every_generation_tab_has_the_characters_field(service):
    import gradio as gr

    from webui.ui import build_ui

    demo = build_ui(service)
    tables = {fn.api_name: fn.fn.fields for fn in demo.fns.values()
              if getattr(fn, "api_name", None) in ("txt2img", "img2img", "inpaint") and hasattr(fn.fn, "fields")}
    assert set(tables) == {"txt2img", "img2img", "inpaint"}
    for table in tables.values():
        assert isinstance(table["characters"], gr.Dropdown) and table["characters"].multiselect


def test_the_editor_reads_loras_with_weights():
    from webui.ui.character_panel import parse_loras

    assert parse_loras("face:0.8, light") == [{"name": "face", "weight": 0.8}, {"name": "light", "weight": 1.0}]
    assert parse_loras(" , ") == []
    with pytest.raises(UserError, match="name:weight"):
        parse_loras("face:strong")
