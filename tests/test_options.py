"""A1111's options: /sdapi/v1/options round trips and persists, override_settings apply to one
request, ignored keys are listed, bad values are refused naming the key, output folders stay in
the outputs folder, --auth guards changes, and webuiapi / sd-backend-client work unchanged."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from webui.metadata.image_meta import read_infotext
from webui.options import OPTIONS, OptionStore
from webui.serving.service import Service
from webui.settings import Settings

API = "/sdapi/v1"
TINY = dict(prompt="a face", seed=5, steps=1, width=64, height=64, sampler_name="Euler", batch_size=1, n_iter=1)


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("opt-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    (root / "VAE").mkdir()
    (root / "VAE" / "soft.safetensors").write_bytes(b"x")
    settings = Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("opt-out"), device="cpu")
    return Service.create(settings)


@pytest.fixture(autouse=True)
def reset(service):
    yield  # every test starts from the defaults
    store = service.options
    with store._lock:
        store.changed.clear()
    store.path.unlink(missing_ok=True)
    service._apply_previews()


def saved_files(service, since: set) -> list:
    return sorted(p for p in service.settings.outputs_dir.rglob("*") if p.is_file() and p not in since
                  and p.name != "options.json")


def all_files(service) -> set:
    return set(service.settings.outputs_dir.rglob("*"))


def test_get_lists_every_option_with_its_value(http, service):
    got = http.get(f"{API}/options").json()
    for o in OPTIONS:
        assert o.key in got
    assert got["sd_model_checkpoint"].startswith("alpha")
    assert got["samples_format"] == "png" and got["CLIP_stop_at_last_layers"] == 1
    assert got["outdir_txt2img_samples"] == str(service.settings.outputs_dir.resolve() / "txt2img-images")
    assert got["eta_noise_seed_delta"] == 0 and got["randn_source"] == "CPU"
    assert "sd_checkpoint_hash" in got and "eta_ancestral" not in got  # no meaning here: not listed


def test_round_trip_and_persist_across_restart(http, service):
    body = {"samples_format": "webp", "jpeg_quality": 70, "save_txt": True, "CLIP_stop_at_last_layers": 2,
            "outdir_txt2img_samples": "mine/t2i", "show_progress_every_n_steps": 2, "sd_vae": "soft"}
    r = http.post(f"{API}/options", json=body)
    assert r.status_code == 200 and r.json() == {"warnings": []}
    got = http.get(f"{API}/options").json()
    assert {k: got[k] for k in body} == body
    assert service.manager.settings.preview_every == 2  # live previews follow at once
    req = service.request({"prompt": "x"})  # the defaults of what a request leaves out
    assert (req.clip_skip, req.sd_vae) == (2, "soft")
    assert service.request({"prompt": "x", "clip_skip": 3, "sd_vae": "Automatic"}).clip_skip == 3
    again = Service.create(service.settings, load_model=False)  # a restart over the same folders
    assert {k: again.option_values()[k] for k in body} == body
    # posting back everything GET returned changes nothing and warns of nothing
    assert http.post(f"{API}/options", json=got).json() == {"warnings": []}


def test_previews_can_be_turned_off(http, service):
    assert http.post(f"{API}/options", json={"live_previews_enable": False}).status_code == 200
    assert service.manager.settings.preview_every == 0


def test_ignored_keys_are_listed_never_dropped(http):
    r = http.post(f"{API}/options", json={"eta_ancestral": 0.5, "no_such_option": 1, "eta_noise_seed_delta": 31337,
                                         "grid_save": False, "samples_format": "jpg"})
    assert r.status_code == 200
    warnings = "\n".join(r.json()["warnings"])
    assert "eta_ancestral: ignored (it has no meaning" in warnings
    assert "no_such_option: ignored (it is not an A1111 option)" in warnings
    assert "eta_noise_seed_delta: ignored" in warnings
    assert "grid_save" not in warnings  # the value it has anyway
    got = http.get(f"{API}/options").json()
    assert got["eta_noise_seed_delta"] == 0 and got["samples_format"] == "jpg"


@pytest.mark.parametrize("body, key", [
    ({"jpeg_quality": "high"}, "jpeg_quality"), ({"jpeg_quality": 101}, "jpeg_quality"),
    ({"samples_save": 1}, "samples_save"), ({"samples_format": "gif"}, "samples_format"),
    ({"CLIP_stop_at_last_layers": True}, "CLIP_stop_at_last_layers"), ({"sd_vae": "missing"}, "sd_vae"),
    ({"outdir_samples": 5}, "outdir_samples"),
])
def test_wrong_values_are_refused_naming_the_key(http, body, key):
    r = http.post(f"{API}/options", json={"save_txt": True, **body})
    assert r.status_code == 422 and r.json()["field"] == key and key in r.json()["detail"]
    assert http.get(f"{API}/options").json()["save_txt"] is False  # nothing was set


def test_folders_outside_the_outputs_are_refused(http, service, tmp_path):
    out = service.settings.outputs_dir
    (out / "link-out").symlink_to(tmp_path, target_is_directory=True)
    try:
        for bad in ("/tmp/elsewhere", "../escape", "a/../../escape", "~/x", "link-out/x", str(tmp_path)):
            r = http.post(f"{API}/options", json={"outdir_samples": bad})
            assert r.status_code == 422 and r.json()["field"] == "outdir_samples", bad
            assert "inside the outputs folder" in r.json()["detail"]
        r = http.post(f"{API}/txt2img", json={**TINY, "override_settings": {"outdir_txt2img_samples": "/tmp/x"}})
        assert r.status_code == 422 and r.json()["field"] == "override_settings.outdir_txt2img_samples"
    finally:
        (out / "link-out").unlink()
    assert http.post(f"{API}/options", json={"outdir_samples": str(out / "all")}).status_code == 200


def test_saving_follows_the_options(http, service):
    http.post(f"{API}/options", json={"samples_format": "webp", "webp_lossless": True, "save_txt": True,
                                     "outdir_txt2img_samples": "mine"}).raise_for_status()
    before = all_files(service)
    r = http.post(f"{API}/txt2img", json={**TINY, "save_images": True})
    assert r.status_code == 200
    files = saved_files(service, before)
    assert [p.suffix for p in files] == [".txt", ".webp"]
    assert files[0].parent.parent == service.settings.outputs_dir.resolve() / "mine"
    img = files[1]
    assert read_infotext(img.read_bytes())[0] == files[0].read_text(encoding="utf-8")
    returned = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB")
    assert (np.asarray(Image.open(img).convert("RGB")) == np.asarray(returned)).all()  # lossless
    http.post(f"{API}/options", json={"samples_save": False}).raise_for_status()
    before = all_files(service)
    http.post(f"{API}/txt2img", json={**TINY, "save_images": True}).raise_for_status()
    assert saved_files(service, before) == []


def test_override_settings_apply_to_one_request_and_restore(http, service):
    before = all_files(service)
    over = {"samples_format": "jpg", "jpeg_quality": 50, "CLIP_stop_at_last_layers": 2, "eta_ancestral": 1}
    r = http.post(f"{API}/txt2img", json={**TINY, "save_images": True, "override_settings": over})
    assert r.status_code == 200
    info = json.loads(r.json()["info"])
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    assert any(w.startswith("eta_ancestral: ignored") for w in info["warnings"])
    assert [p.suffix for p in saved_files(service, before)] == [".jpg"]
    got = http.get(f"{API}/options").json()
    assert got["samples_format"] == "png" and got["CLIP_stop_at_last_layers"] == 1  # restored
    r = http.post(f"{API}/txt2img", json={**TINY, "override_settings": {"CLIP_stop_at_last_layers": 3},
                                          "override_settings_restore_afterwards": False})
    assert json.loads(r.json()["info"])["clip_skip"] == 3
    assert http.get(f"{API}/options").json()["CLIP_stop_at_last_layers"] == 3  # kept, as A1111 does
    r = http.post(f"{API}/txt2img", json=TINY)  # the option is now the default of requests
    assert json.loads(r.json()["info"])["clip_skip"] == 3
    r = http.post(f"{API}/txt2img", json={**TINY, "override_settings": {"jpeg_quality": "x"}})
    assert r.status_code == 422 and r.json()["field"] == "override_settings.jpeg_quality"


def test_only_authenticated_callers_change_options_under_auth(service, launch_app):
    secured = dataclasses.replace(service, settings=dataclasses.replace(service.settings, auth=(("ann", "pw"),)))
    demo, url = launch_app(secured)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.post(f"{API}/options", json={"save_txt": True}).status_code == 401
            assert c.post(f"{API}/options", json={"save_txt": True}, auth=("ann", "nope")).status_code == 401
            assert c.get(f"{API}/options").status_code == 401
            assert c.post(f"{API}/options", json={"save_txt": True}, auth=("ann", "pw")).status_code == 200
    finally:
        demo.close()
    assert OptionStore(service.settings.outputs_dir).values()["save_txt"] is True  # saved to the shared file


def test_broken_options_file_falls_back_to_defaults(tmp_path):
    (tmp_path / "options.json").write_text('{"jpeg_quality": "bad", "save_txt": true, "grid_save": true}')
    store = OptionStore(tmp_path)
    assert store.values()["save_txt"] is True and store.values()["jpeg_quality"] == 80
    assert store.values()["grid_save"] is False and any("jpeg_quality" in p for p in store.problems)
    (tmp_path / "options.json").write_text("not json")
    assert OptionStore(tmp_path).values()["save_txt"] is False


def test_webuiapi_options_and_override_settings(server, service):
    import webuiapi

    u = urlparse(server)
    api = webuiapi.WebUIApi(host=u.hostname, port=u.port, sampler="Euler", steps=1)
    assert api.get_options()["samples_format"] == "png"
    assert api.set_options({"samples_format": "webp", "eta_ancestral": 1})["warnings"][0].startswith("eta_ancestral")
    assert api.get_options()["samples_format"] == "webp"
    before = all_files(service)
    r = api.txt2img(prompt="a face", seed=5, width=64, height=64, save_images=True,
                    override_settings={"samples_format": "jpg", "CLIP_stop_at_last_layers": 2})
    assert r.info["clip_skip"] == 2 and [p.suffix for p in saved_files(service, before)] == [".jpg"]
    assert api.get_options()["samples_format"] == "webp"
    assert api.util_get_current_model().startswith("alpha")


def test_sd_backend_client_options(server):
    from sd_backend_client.api.a1111_webservice import A1111Webservice
    from sd_backend_client.api.detect import connect_to_backend

    assert isinstance(connect_to_backend(server), A1111Webservice)  # found by its /options
    ws = A1111Webservice(server)
    assert ws.get_config()["CLIP_stop_at_last_layers"] == 1
    ws.set_config({"CLIP_stop_at_last_layers": 2, "save_txt": True})
    cfg = ws.get_config()
    assert cfg["CLIP_stop_at_last_layers"] == 2 and cfg["save_txt"] is True


def test_options_file_written_atomically(service, monkeypatch):
    import webui.options as options

    written = []
    monkeypatch.setattr(options, "write_atomic", lambda path, data: written.append((path, data)))
    service.set_options({"jpeg_quality": 60})
    assert written and written[0][0] == service.settings.outputs_dir / "options.json"
    assert json.loads(written[0][1]) == {"jpeg_quality": 60}
    assert os.path.basename(written[0][0]) == "options.json"
