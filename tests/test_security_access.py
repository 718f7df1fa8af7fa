"""Attacks on who owns what, through a real server: two --auth users, forged session_hash,
forged X-Forwarded-For, the rate limit on every GPU route, the API docs, and clients that hang up.

Each test here failed before the fix it guards (the owner was the client-sent session_hash, the
rate limit was checked by the UI only, uvicorn believed X-Forwarded-For from 127.0.0.1, /docs
was open, REST jobs ran on after their client left)."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time

import httpx
import pytest
from PIL import Image

from webui.serving.identity import SESSION_COOKIE, Caller, client_address, ui_owner
from webui.serving.ratelimit import RateLimiter
from webui.serving.service import Service
from webui.settings import Settings

API = "/sdapi/v1"
BASE = dict(prompt="portrait", negative_prompt="", seed=5, steps=2, cfg_scale=7, width=64, height=64,
            sampler_name="Euler", scheduler="Automatic", batch_size=1, n_iter=1)
LONG = {**BASE, "steps": 150, "n_iter": 6}
ALICE, BOB = ("alice", "pw-alice"), ("bob", "pw-bob")


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("sec-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    settings = Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("sec-out"), device="cpu")
    svc = Service.create(settings)
    yield svc
    svc.close()


def _serve(launch_app, service, **settings):
    svc = dataclasses.replace(service, settings=dataclasses.replace(service.settings, **settings))
    return launch_app(svc)


@pytest.fixture(scope="module")
def open_server(service, launch_app):
    demo, url = _serve(launch_app, service)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def auth_server(service, launch_app):
    demo, url = _serve(launch_app, service, auth=(ALICE, BOB))
    yield url
    demo.close()


@pytest.fixture(scope="module")
def proxied_server(service, launch_app):
    """The admin named 127.0.0.1 as a proxy: its X-Forwarded-For is believed."""
    demo, url = _serve(launch_app, service, forwarded_allow_ips="127.0.0.1")
    yield url
    demo.close()


def _in_thread(fn):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", fn()), daemon=True)
    t.start()
    return t, box


def _wait(cond, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition never held")


def _running(service, job_id):
    job = service.jobs.get(job_id)
    return job is not None and job.state == "running" and job.step >= 1


def _gradio(url, auth=None):
    from gradio_client import Client
    return Client(url, auth=auth, verbose=False)


def _page_job(service, c, user=None):
    return service.jobs.latest_for(ui_owner(user, c.cookies.get(SESSION_COOKIE, ""), c.session_hash))


# ---- 1. ownership comes from what the server verified -------------------------------------------

def test_bob_cannot_watch_stop_or_skip_alices_rest_job(auth_server, service):
    t, box = _in_thread(lambda: httpx.post(f"{auth_server}{API}/txt2img", auth=ALICE, timeout=300,
                                           json={**LONG, "force_task_id": "alice-rest"}))
    bob = httpx.Client(base_url=auth_server, auth=BOB, timeout=60)
    try:
        _wait(lambda: _running(service, "alice-rest"))
        for forged in ("api:alice", "alice", "api:127.0.0.1"):
            assert bob.get(f"{API}/progress", params={"session_hash": forged}).json()["state"]["job"] == ""
            assert bob.post(f"{API}/interrupt", params={"session_hash": forged}).json() == {"job": None}
            assert bob.post(f"{API}/skip", json={"session_hash": forged}).json() == {"job": None}
        assert bob.get(f"{API}/progress", params={"id_task": "alice-rest"}).json()["state"]["job"] == ""
        job = service.jobs.get("alice-rest")
        assert not job.interrupted and not job.skipped and job.state == "running"
    finally:
        httpx.post(f"{auth_server}{API}/interrupt", auth=ALICE, json={"id_task": "alice-rest"})
        t.join(300)
    assert box["r"].status_code == 200 and len(box["r"].json()["images"]) >= 1


def test_bob_with_alices_session_hash_cannot_stop_her_page_job(auth_server, service):
    from types import SimpleNamespace

    from webui.ui.common import owner_of
    alice = _gradio(auth_server, ALICE)
    job = alice.submit(**{**LONG, "hr_prompt": "", "hr_negative_prompt": "", "face_detail_prompt": "",
                          "face_detail_negative_prompt": ""}, api_name="/txt2img")
    try:
        _wait(lambda: (j := _page_job(service, alice, "alice")) is not None and j.state == "running" and j.step >= 1)
        mine = _page_job(service, alice, "alice")
        # Bob's Interrupt/Skip buttons with Alice's page id (forged or leaked): what the handlers
        # see is a gr.Request with Gradio's verified user name and Bob's own cookie.
        forged = SimpleNamespace(username="bob", session_hash=alice.session_hash, client=SimpleNamespace(host="127.0.0.1"),
                                 headers={"cookie": f"{SESSION_COOKIE}={alice.cookies.get(SESSION_COOKIE, '')}"})
        assert owner_of(service, forged) != mine.owner
        assert service.jobs.interrupt(owner_of(service, forged)) == 0
        assert service.jobs.skip(owner_of(service, forged)) == 0
        # Bob's REST calls naming Alice's page id reach nothing either (refused outright: the page
        # id belongs to Alice's browser session; in the body it is hashed with Bob's own session).
        assert httpx.get(f"{auth_server}{API}/progress", auth=BOB,
                         params={"session_hash": alice.session_hash}).status_code == 403
        assert httpx.post(f"{auth_server}{API}/interrupt", auth=BOB,
                          json={"session_hash": alice.session_hash}).json() == {"job": None}
        assert not mine.interrupted and not mine.skipped
    finally:
        alice.predict(api_name="/interrupt")       # her own button still works
        job.result(timeout=300)
    assert mine.interrupted


def test_a_page_event_stream_is_read_only_by_its_own_browser_session(open_server):
    alice = _gradio(open_server)
    first = alice.predict(**{**BASE, "hr_prompt": "", "hr_negative_prompt": "", "face_detail_prompt": "",
                             "face_detail_negative_prompt": ""}, api_name="/txt2img")
    assert first[1].startswith("portrait")
    # Gradio streams a page's results to whoever names its session_hash; a stranger (no cookie,
    # or a cookie of its own) is refused, the page itself goes on working.
    stream = f"{open_server}/gradio_api/queue/data"
    assert httpx.get(stream, params={"session_hash": alice.session_hash}, timeout=10).status_code == 403
    stranger = httpx.Client(timeout=10)
    stranger.get(f"{open_server}/config")
    assert stranger.cookies.get(SESSION_COOKIE) and stranger.cookies.get(SESSION_COOKIE) != alice.cookies[SESSION_COOKIE]
    assert stranger.get(stream, params={"session_hash": alice.session_hash}).status_code == 403
    assert stranger.get(f"{open_server}/gradio_api/heartbeat/{alice.session_hash}").status_code == 403
    again = alice.predict(**{**BASE, "seed": 6, "hr_prompt": "", "hr_negative_prompt": "", "face_detail_prompt": "",
                             "face_detail_negative_prompt": ""}, api_name="/txt2img")
    assert "Seed: 6," in again[1]


def test_a_forged_session_hash_never_names_a_rest_clients_history(open_server, service):
    r = httpx.post(f"{open_server}{API}/txt2img", json={**BASE, "seed": 77}, timeout=120)
    assert r.status_code == 200
    assert service.jobs.history("api@127.0.0.1")     # the REST client's own images are remembered
    for forged in ("api@127.0.0.1", "api:127.0.0.1", "127.0.0.1"):
        visitor = Caller("ui", session_hash=forged, address="127.0.0.1")
        assert visitor.owner.startswith("ui:") and service.jobs.history(visitor.owner) == []
    # Through the REST API too: a page id is hashed with the caller's own session, never used as is.
    assert ui_owner(None, "", "x") != ui_owner("alice", "", "x") != ui_owner(None, "sid", "x")


def test_open_api_callers_reach_their_jobs_only_by_verified_address_or_id(service):
    s = service.settings
    assert client_address("10.0.0.7", s) == "10.0.0.7"
    # Behind a --share tunnel or a Spaces proxy everybody has the same address: it names nobody,
    # so only job ids reach jobs.
    assert client_address("127.0.0.1", dataclasses.replace(s, share=True)) is None
    assert client_address("10.0.0.7", dataclasses.replace(s, behind_proxy=True)) is None
    assert Caller("api", address=None).owner is None
    assert client_address("10.0.0.7", dataclasses.replace(s, behind_proxy=True, forwarded_allow_ips="10.0.0.1"))


# ---- 2. the rate limit: every GPU route, forged headers do not reset it --------------------------

def test_rate_limit_covers_every_gpu_route_and_ignores_forged_forwarded_for(open_server, service):
    service.rate = RateLimiter(1)
    try:
        ok = httpx.post(f"{open_server}{API}/txt2img", json=BASE, timeout=120)
        assert ok.status_code == 200
        refused = [
            httpx.post(f"{open_server}{API}/txt2img", json=BASE, timeout=60),
            httpx.post(f"{open_server}{API}/txt2img", json=BASE, timeout=60, headers={"X-Forwarded-For": "9.9.9.9"}),
            httpx.post(f"{open_server}{API}/img2img", timeout=60, headers={"X-Real-IP": "8.8.8.8"},
                       json={**BASE, "init_images": [_png_b64()]}),
            httpx.post(f"{open_server}{API}/options", json={"sd_model_checkpoint": "alpha"}, timeout=60),
            httpx.post(f"{open_server}{API}/extra-single-image", timeout=60,
                       json={"image": _png_b64(), "upscaler_1": "Lanczos"}),
            httpx.post(f"{open_server}{API}/interrogate", json={"image": _png_b64()}, timeout=60),
            httpx.post(f"{open_server}{API}/unload-checkpoint", timeout=60),
            httpx.post(f"{open_server}/controlnet/detect", timeout=60,
                       json={"controlnet_module": "canny", "controlnet_input_images": [_png_b64()]}),
        ]
        for r in refused:
            assert r.status_code == 429, r.text
            assert int(r.headers["Retry-After"]) >= 1 and "rate limit" in r.json()["detail"]
        c = _gradio(open_server)
        with pytest.raises(Exception, match="rate limit"):
            c.predict(_png_file(), "Scale by", 2, 0, 0, "Lanczos", api_name="/extras_upscale")
        with pytest.raises(Exception, match="rate limit"):
            c.predict(**{**BASE, "hr_prompt": "", "hr_negative_prompt": "", "face_detail_prompt": "",
                         "face_detail_negative_prompt": ""}, api_name="/txt2img")
        # Reading is not GPU work: still served.
        assert httpx.get(f"{open_server}{API}/sd-models").status_code == 200
    finally:
        service.rate = None


def test_forwarded_for_is_believed_only_from_named_proxies(proxied_server, service):
    service.rate = RateLimiter(1)
    try:
        def post(ip):
            return httpx.post(f"{proxied_server}{API}/txt2img", json=BASE, timeout=120,
                              headers={"X-Forwarded-For": ip}).status_code
        assert post("203.0.113.1") == 200
        assert post("203.0.113.1") == 429
        assert post("203.0.113.2") == 200              # another real client behind the named proxy
    finally:
        service.rate = None


# ---- 5. the API's own docs need the credentials too ----------------------------------------------

def test_docs_and_schema_need_credentials_under_auth(auth_server, open_server):
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(f"{auth_server}{path}").status_code == 401
        assert httpx.get(f"{auth_server}{path}", auth=("alice", "wrong")).status_code == 401
        assert httpx.get(f"{auth_server}{path}", auth=ALICE).status_code == 200
        assert httpx.get(f"{open_server}{path}").status_code == 200
    assert f"{API}/txt2img" in httpx.get(f"{auth_server}/openapi.json", auth=ALICE).json()["paths"]


EXTRA_ROUTES = [("POST", f"{API}/extra-single-image"), ("POST", f"{API}/extra-batch-images"),
                ("GET", f"{API}/realesrgan-models"), ("POST", f"{API}/interrogate"),
                ("POST", f"{API}/unload-checkpoint"), ("POST", f"{API}/reload-checkpoint"),
                ("GET", "/controlnet/version"), ("GET", "/controlnet/model_list"), ("GET", "/controlnet/module_list"),
                ("GET", "/controlnet/control_types"), ("GET", "/controlnet/settings"),
                ("POST", "/controlnet/detect"), ("POST", "/controlnet/render_openpose_json"),
                ("GET", "/adetailer/v1/version"), ("GET", "/adetailer/v1/schema"), ("GET", "/adetailer/v1/ad_model")]


def test_the_extras_and_extension_routes_need_credentials_and_check_bodies(auth_server):
    for method, path in EXTRA_ROUTES:
        assert httpx.request(method, f"{auth_server}{path}", timeout=60).status_code == 401, path
    # The JSON body check (edge.py) covers them: a NaN is a 422 naming the field, not a 500.
    for path, body in [(f"{API}/extra-single-image", '{"image": "x", "upscaling_resize": NaN}'),
                       ("/controlnet/detect", '{"controlnet_threshold_a": NaN}')]:
        r = httpx.post(f"{auth_server}{path}", content=body, auth=ALICE, timeout=60,
                       headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] in ("upscaling_resize", "controlnet_threshold_a"), r.text
    paths = httpx.get(f"{auth_server}/openapi.json", auth=ALICE).json()["paths"]
    assert {p for _, p in EXTRA_ROUTES} <= set(paths)


# ---- 10. a client that hangs up stops its job ----------------------------------------------------

def test_a_running_rest_job_stops_when_its_client_hangs_up(open_server, service):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{open_server}{API}/txt2img", json={**LONG, "force_task_id": "gone-running"},
                   timeout=httpx.Timeout(60, read=2))
    _wait(lambda: service.jobs.get("gone-running") is not None and service.jobs.get("gone-running").state == "done",
          timeout=60)
    job = service.jobs.get("gone-running")
    assert job.interrupted and job.image_index < 5   # stopped early, not after 6 x 150 steps


def test_a_queued_rest_job_of_a_gone_client_never_reaches_the_gpu(open_server, service):
    with service.queue.hold():
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{open_server}{API}/txt2img", json={**BASE, "force_task_id": "gone-queued"},
                       timeout=httpx.Timeout(60, read=1.5))
        _wait(lambda: service.jobs.get("gone-queued") is not None and service.jobs.get("gone-queued").interrupted,
              timeout=30)
        before = service.queue.batches_run
    _wait(lambda: service.jobs.get("gone-queued").state == "done", timeout=30)
    assert service.queue.batches_run == before       # dropped from the queue, never run
    assert httpx.post(f"{open_server}{API}/txt2img", json=BASE, timeout=120).status_code == 200


def _png_b64() -> str:
    import base64
    import io
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _png_file():
    import tempfile
    from gradio_client import handle_file
    path = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
    Image.new("RGB", (32, 32), (120, 90, 60)).save(path)
    return handle_file(path)
