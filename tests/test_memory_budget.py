"""Memory per request and per client is bounded by bytes: a request whose uploads x batch x
count would hold more than --max-request-bytes is refused before it queues, naming the field
to lower (UI/Service and REST alike), and the History tab's unsaved images stay under their
byte bounds however big the results are."""

from __future__ import annotations

import base64
import dataclasses
import io
import shutil
import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from webui.api.routes import attach_api
from webui.engine.manager import GenerationResult
from webui.errors import UserError
from webui.engine.jobs import JobRegistry
from webui.request import GenerationRequest
from webui.serving.service import Service
from webui.settings import Limits, Settings, settings_from_args

SMALL = dict(prompt="a face", steps=2, width=64, height=64, sampler_name="Euler", save_images=False)


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("budget-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    svc = Service.create(Settings(models_dir=root, outputs_dir=root / "out", device="cpu"))
    yield svc
    svc.close()


def with_limit(service, limit: int) -> Service:
    limits = dataclasses.replace(service.settings.limits, max_request_bytes=limit)
    return dataclasses.replace(service, settings=dataclasses.replace(service.settings, limits=limits))


def big_upload() -> tuple[Image.Image, Image.Image]:
    """A 4096x4096 picture and mask that compress to a few hundred KB, as the probe's did."""
    img = Image.new("RGB", (4096, 4096), (120, 90, 60))
    ImageDraw.Draw(img).ellipse((1000, 1000, 3000, 3000), fill=(200, 150, 120))
    mask = Image.new("L", (4096, 4096), 0)
    ImageDraw.Draw(mask).rectangle((1800, 1800, 2300, 2300), fill=255)
    return img, mask


def b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_the_limit_is_a_flag_and_an_environment_variable(monkeypatch):
    assert Limits().max_request_bytes == 1 << 30
    assert settings_from_args(["--max-request-bytes", "12345"]).limits.max_request_bytes == 12345
    monkeypatch.setenv("WEBUI_MAX_REQUEST_BYTES", "777")
    assert settings_from_args([]).limits.max_request_bytes == 777


def test_service_refuses_a_big_inpaint_at_batch_8_saying_how_big_and_what_to_lower(service):
    img, mask = big_upload()
    # The probe's request: 8 results of 4096x4096, estimated at 1.6 GiB (benchmarks/request_memory.py).
    with pytest.raises(UserError) as e:
        service.request({**SMALL, "width": 512, "height": 512, "init_image": img, "mask": mask,
                         "batch_size": 8}, "inpaint")
    msg = str(e.value)
    assert e.value.field == "batch_size"
    assert "1.6 GiB" in msg and "1.0 GiB" in msg and "--max-request-bytes" in msg
    assert "8 images of 4096x4096" in msg and "at most 3 images of this size fit" in msg
    assert service.request({**SMALL, "width": 512, "height": 512, "init_image": img, "mask": mask,
                            "batch_size": 3}, "inpaint").batch_size == 3
    with pytest.raises(UserError) as e:   # even one such image is too much under a tight limit
        with_limit(service, 256 << 20).request({**SMALL, "width": 512, "height": 512, "init_image": img,
                                                "mask": mask}, "inpaint")
    assert e.value.field == "init_images" and "smaller input image" in str(e.value)


def test_the_field_named_is_the_one_that_gets_the_request_under_the_limit(service):
    cases = [  # limit, fields, the field named
        (64, dict(width=1024, height=1024, batch_size=8, n_iter=4), "n_iter"),      # one batch fits
        (64, dict(width=2048, height=2048, batch_size=8, n_iter=1), "batch_size"),  # one batch is too big
        (16, dict(width=1024, height=1024, enable_hr=True, hr_scale=2), "hr_scale"),  # one image is too big
        (16, dict(width=2048, height=2048), "width"),
    ]
    for mib, fields, field in cases:
        with pytest.raises(UserError) as e:
            with_limit(service, mib << 20).request({**SMALL, **fields})
        assert e.value.field == field, (fields, str(e.value))
        assert f"limit of {mib} MiB (--max-request-bytes)" in str(e.value)
    # Under the limit: built as before.
    fits = with_limit(service, 64 << 20).request({**SMALL, "width": 512, "height": 512, "batch_size": 8})
    assert fits.batch_size == 8
    assert service.request({**SMALL, "width": 1024, "height": 1024, "batch_size": 8, "n_iter": 16}).n_iter == 16


def test_rest_img2img_with_a_big_image_and_batch_8_is_refused_and_the_server_still_serves(service):
    app = FastAPI()
    attach_api(app, service)
    client = TestClient(app)
    img, mask = big_upload()
    body = {**SMALL, "width": 512, "height": 512, "batch_size": 8, "init_images": [b64(img)], "mask": b64(mask)}
    r = client.post("/sdapi/v1/img2img", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["field"] == "batch_size" and "--max-request-bytes" in r.json()["detail"]
    before = service.queue.batches_run
    ok = client.post("/sdapi/v1/img2img", json={**SMALL, "init_images": [b64(img.resize((64, 64)))]})
    assert ok.status_code == 200 and len(ok.json()["images"]) == 1
    assert service.queue.batches_run == before + 1  # only the small one reached the GPU queue


def _result(size: int, n: int = 1, paths=()) -> GenerationResult:
    images = [Image.new("RGB", (size, size), (i, 0, 0)) for i in range(n)]
    return GenerationResult(GenerationRequest(), images, list(range(n)), [f"#{i}" for i in range(n)], "m", None,
                            paths=list(paths))


def _bytes(items) -> int:
    return sum(img.width * img.height * 3 for img, _ in items if isinstance(img, Image.Image))


def test_history_memory_stays_under_its_byte_bounds_after_many_big_results():
    jobs = JobRegistry()
    jobs.HISTORY_BYTES_PER_OWNER = 4 << 20
    jobs.HISTORY_BYTES = 10 << 20
    one = 512 * 512 * 3  # 768 KiB
    owners = [f"client{i}" for i in range(6)]
    for k in range(8):
        for o in owners:
            jobs.record(o, _result(512, n=2))
            mine = jobs.history(o)
            assert _bytes(mine) <= 4 << 20
            assert sum(_bytes(jobs.history(x)) for x in owners) <= 10 << 20
            assert mine[-1][1] == "#1" and isinstance(mine[-1][0], Image.Image)  # the newest is kept
    # As many as the bound allows (13), the newest across clients kept: each client's last
    # result (2 images) and the last client's image before that.
    assert sum(_bytes(jobs.history(x)) for x in owners) == (10 << 20) // one * one
    assert [len(jobs.history(o)) for o in owners] == [2, 2, 2, 2, 2, 3]

    # One busy client: its own bound (5 images of 768 KiB in 4 MiB) holds, newest kept.
    for k in range(8):
        jobs.record("busy", _result(512, n=2))
    assert len(jobs.history("busy")) == 5 and _bytes(jobs.history("busy")) <= 4 << 20

    # An image over the per-client bound is not kept in memory at all; saved ones stay as paths.
    jobs.record("big", _result(2048))
    assert jobs.history("big") == []
    jobs.record("big", _result(2048, paths=["outputs/x.png"]))
    assert jobs.history("big") == [("outputs/x.png", "#0")]


def test_one_client_cannot_park_more_than_twice_the_request_budget_in_the_queue(service):
    from webui.serving.identity import Caller
    from webui.serving.memory_budget import estimate
    from webui.serving.ratelimit import RateLimited
    small = with_limit(service, 1 << 30)
    req = small.request({**SMALL, "width": 256, "height": 256, "batch_size": 2})
    need = estimate(req).total
    svc = dataclasses.replace(small, client_bytes=None, queue=service.queue)
    svc.client_bytes.limit = 2 * need + need // 2     # room for two such requests, not three
    ann, bob = Caller("api", user="ann"), Caller("api", user="bob")
    done = []
    with service.queue.hold():                        # nothing runs: the requests wait in the queue
        threads = [threading.Thread(target=lambda: done.append(svc.generate(req, owner=ann))) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while service.queue.pending() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        third: list = []

        def try_third():
            try:
                third.append(svc.generate(req, owner=ann))
            except RateLimited as e:
                third.append(e)
        t3 = threading.Thread(target=try_third, daemon=True)
        t3.start()
        t3.join(10)                                   # refused at once, not queued behind the hold
        assert third and isinstance(third[0], RateLimited) and "2 x --max-request-bytes" in str(third[0])
        bob_thread = threading.Thread(target=lambda: done.append(svc.generate(req, owner=bob)))
        bob_thread.start()                            # another client is not affected
        while service.queue.pending() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.queue.pending() == 3
    for t in [*threads, bob_thread]:
        t.join(120)
    assert len(done) == 3 and svc.client_bytes._held == {}   # all handed back
    svc.generate(req, owner=ann)                      # ann's share is free again
