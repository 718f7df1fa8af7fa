"""A1111 scripts through the REST API: the listings, refusing unknown scripts, the X/Y/Z plot
(cells equal to the single generations, grid first, batched on the GPU queue), and webuiapi
0.9.17 against a live server (its remembered ControlNet unit is switched off on the next call)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from test_controlnet import cpu_service, edges_image, sd1_models_dir

API = "/sdapi/v1"
BASE = dict(prompt="portrait of a sailor", negative_prompt="blurry", steps=2, width=64, height=64,
            sampler_name="Euler", seed=11)


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    return cpu_service(sd1_models_dir(tiny_models, tmp_path_factory, "scripts-models"), tmp_path_factory)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, timeout=300) as c:
        yield c


def pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def test_listings(http):
    scripts = http.get(f"{API}/scripts").json()
    assert {"x/y/z plot", "controlnet", "adetailer"} <= set(scripts["txt2img"]) <= set(scripts["img2img"])
    info = http.get(f"{API}/script-info").json()
    alwayson = {s["name"] for s in info if s["is_alwayson"]}
    assert alwayson == {"controlnet", "adetailer"}


@pytest.mark.parametrize("extra, field, words", [
    ({"alwayson_scripts": {"Self Attention Guidance": {"args": [True]}}}, "alwayson_scripts",
     ["Self Attention Guidance"]),
    ({"script_name": "Prompt matrix", "script_args": []}, "script_name", ["Prompt matrix"]),
    ({"script_name": "x/y/z plot", "script_args": ["Seed", "1-1000"]}, "script_args", ["1000", "64"]),
    ({"script_name": "x/y/z plot", "script_args": ["Wobble", "1,2"]}, "script_args", ["Wobble"]),
    ({"script_name": "x/y/z plot", "script_args": ["Steps", "2, lots"]}, "script_args", ["lots"]),
    ({"script_name": "x/y/z plot", "script_args": ["Steps", "2, 5000"]}, "steps", ["5000"]),
    ({"script_name": "x/y/z plot", "script_args": ["Checkpoint name", "alpha, nope"]}, "sd_model_checkpoint",
     ["nope"]),
])
def test_bad_scripts_are_refused_before_anything_runs(http, service, extra, field, words):
    before = service.queue.batches_run
    r = http.post(f"{API}/txt2img", json={**BASE, **extra})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field, body
    for w in words:
        assert w in body["detail"], body
    assert service.queue.batches_run == before  # nothing half-run


def test_xyz_plot_of_seeds_by_cfg(http, service):
    args = ["Seed", "11, 12", [], "CFG Scale", "5, 9", [], "Nothing", "", [], True, True, False, False,
            False, False, False, 0, False]
    before = service.queue.batches_run
    r = http.post(f"{API}/txt2img", json={**BASE, "script_name": "X/Y/Z Plot", "script_args": args,
                                          "save_images": True})
    assert r.status_code == 200, r.text
    assert service.queue.batches_run - before == 2  # cells of one CFG share a UNet batch
    body = r.json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 5 and len(info["infotexts"]) == 5
    grid = pixels(body["images"][0])
    assert grid.shape[0] > 128 and grid.shape[1] > 128  # two 64px cells each way, plus the labels
    assert "X Type: Seed" in info["infotexts"][0] and 'Y Values: "5, 9"' in info["infotexts"][0]
    for b64, text, (seed, cfg) in zip(body["images"][1:], info["infotexts"][1:],
                                      [(11, 5), (12, 5), (11, 9), (12, 9)]):
        single = http.post(f"{API}/txt2img", json={**BASE, "seed": seed, "cfg_scale": cfg})
        assert single.status_code == 200
        # a merged batch: the single picture up to rounding (one level, as --no-batching documents)
        diff = np.abs(pixels(b64).astype(int) - pixels(single.json()["images"][0]))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (seed, cfg)
        assert text == json.loads(single.json()["info"])["infotexts"][0]
        assert "X Type" not in text
    grids = list((service.settings.outputs_dir / "txt2img-grids").rglob("*.png"))
    assert len(grids) == 1
    # the grid's cells are the cells: the top-left corner of the last cell is in the grid
    last = pixels(body["images"][4])
    h, w = grid.shape[:2]
    assert np.array_equal(grid[h - 64:, w - 64:], last)


def test_unbatched_cells_equal_the_single_generations_bit_for_bit(service):
    solo = dataclasses.replace(service, queue=None, settings=dataclasses.replace(service.settings, batching=False))
    fields = {**BASE, "script_name": "x/y/z plot", "script_args": ["Seed", "11, 12", [], "CFG Scale", "5, 9",
                                                                   [], "", "", [], False, True]}
    result = solo.run_plot(solo.plot(fields, "txt2img"))
    assert len(result.images) == 5 and result.images[0].size == (128, 128)  # no legend: cells only
    for image, (seed, cfg) in zip(result.images[1:], [(11, 5), (12, 5), (11, 9), (12, 9)]):
        single = solo.generate(solo.request({**BASE, "seed": seed, "cfg_scale": cfg}))
        assert np.array_equal(np.asarray(image), np.asarray(single.images[0])), (seed, cfg)
    solo.queue.close()


def test_webuiapi_switches_the_previous_controlnet_unit_off(server):
    import webuiapi

    host, port = server.split("//")[1].split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler", steps=2)
    assert api.has_controlnet and api.has_adetailer
    unit = webuiapi.ControlNetUnit(image=edges_image(), module="canny", model="tiny-cn")
    first = api.txt2img(prompt="portrait", width=64, height=64, seed=3, controlnet_units=[unit])
    assert "ControlNet 0" in first.info["infotexts"][0]
    plain = api.txt2img(prompt="portrait", width=64, height=64, seed=3)
    assert "ControlNet" not in plain.info["infotexts"][0]


def test_webuiapi_xyz_plot(server):
    import webuiapi

    host, port = server.split("//")[1].split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler", steps=2)
    result = api.txt2img(prompt="portrait", width=64, height=64, seed=3, script_name="x/y/z plot",
                         script_args=[1, "3, 4", [], 4, "1-2", []])
    assert len(result.images) == 1 and result.images[0].width > 128
    assert "X Type: Seed" in result.info["infotexts"][0]


def test_the_script_accordion_becomes_a1111_script_args():
    from webui.ui.xyz_panel import script_fields

    values = {"prompt": "p", "script_name": "X/Y/Z plot", "xyz_x_type": "Seed", "xyz_x_values": "1, 2",
              "xyz_y_type": "CFG Scale", "xyz_y_values": "5, 9", "xyz_z_type": "Nothing", "xyz_z_values": "",
              "xyz_draw_legend": True, "xyz_include_lone_images": True, "xyz_no_fixed_seeds": False,
              "xyz_margin_size": 4}
    fields = script_fields(dict(values))
    assert fields["script_name"] == "x/y/z plot" and not any(k.startswith("xyz_") for k in fields)
    assert fields["script_args"][:6] == ["Seed", "1, 2", [], "CFG Scale", "5, 9", []]
    assert fields["script_args"][9:13] == [True, True, False, False] and fields["script_args"][16] == 4
    plain = script_fields({**values, "script_name": "None"})
    assert "script_name" not in plain and "script_args" not in plain and plain["prompt"] == "p"


def test_sd_backend_client_reads_the_script_listings(server):
    from sd_backend_client.api.a1111_webservice import A1111Webservice

    client = A1111Webservice(server)
    scripts = client.get_scripts()
    assert "x/y/z plot" in scripts.txt2img and "controlnet" in scripts.img2img
    info = client.get_script_info()  # each entry validates against the client's own model
    xyz = next(s for s in info if s.name == "x/y/z plot" and not s.is_img2img)
    assert xyz.args[0].label == "X type" and "Seed" in xyz.args[0].choices
    assert any(s.is_alwayson and s.name == "controlnet" for s in info)
    caps = client.get_capabilities()  # scripts not honoured here are not claimed
    assert not caps.ultimate_upscale and not caps.soft_inpainting


def test_img2img_plot_of_denoising_saves_an_img2img_grid(http, service):
    png = base64.b64encode(_png(edges_image())).decode()
    r = http.post(f"{API}/img2img", json={**BASE, "init_images": [png], "save_images": True,
                                          "script_name": "x/y/z plot",
                                          "script_args": ["Denoising", "0.3, 0.6", [], "", "", [], "", "", [],
                                                          True, True]})
    assert r.status_code == 200, r.text
    infos = json.loads(r.json()["info"])["infotexts"]
    assert len(infos) == 3 and "X Type: Denoising" in infos[0]
    assert "Denoising strength: 0.3" in infos[1] and "Denoising strength: 0.6" in infos[2]
    assert list((service.settings.outputs_dir / "img2img-grids").rglob("*-grid.png"))


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_an_interrupted_plot_runs_no_cell(service):
    plan = service.plot({**BASE, "script_name": "x/y/z plot", "script_args": ["Seed", "1-4"]}, "txt2img")
    job = service.new_job("someone")
    job.interrupt()  # e.g. the client hung up while the cells were being queued
    before = service.queue.batches_run
    result = service.run_plot(plan, job=job)
    assert result.interrupted and result.images == []
    assert service.queue.batches_run == before


def test_gradio_client_runs_the_plot_through_the_tab_endpoint(server):
    from gradio_client import Client

    out = Client(server, verbose=False).predict(
        prompt="portrait", steps=2, width=64, height=64, seed=1, sampler_name="Euler", script_name="X/Y/Z plot",
        xyz_x_type="Seed", xyz_x_values="1, 2", xyz_include_lone_images=True, api_name="/txt2img")
    gallery, infotext = out[0], out[1]
    assert len(gallery) == 3 and "X Type: Seed" in infotext
    with Image.open(gallery[0]["image"]) as grid:
        assert grid.width == 128 and grid.height > 64  # two cells side by side, the labels above


def test_the_plot_is_the_callers_latest_job_and_lands_in_history(service):
    plan = service.plot({**BASE, "script_name": "x/y/z plot", "script_args": ["Seed", "1, 2", [], "", "", [],
                                                                              "", "", [], True, True]}, "txt2img")
    job = service.new_job("painter")
    seen = []
    job.listener = lambda j: seen.append((service.jobs.latest_for("painter") is j, j.progress()))
    result = service.run_plot(plan, job=job)
    assert seen and all(latest for latest, _ in seen) and seen[-1][1] == 1.0
    assert len(service.history("painter")) == len(result.images) == 3
