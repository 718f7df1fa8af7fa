"""Live progress, previews, Skip/Interrupt scoped to their owner, session history, rate limit,
auth parsing, the Spaces wrapper and the safety-filter seam -- on tiny offline models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from webui.metadata.image_meta import read_infotext
from webui.metadata.infotext import infotext_to_fields
from webui.engine.jobs import Job
from webui.serving.service import Service
from webui.settings import Settings


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("live-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    s = Settings(models_dir=models_dir, outputs_dir=tmp_path_factory.mktemp("outputs"), device="cpu",
                 preview_every=1)
    return Service.create(s)


def req(svc, **fields):
    base = dict(prompt="portrait of an old sailor", negative_prompt="blurry", seed=1234, steps=4,
                width=64, height=64, sampler_name="Euler", save_images=False)
    base.update(fields)
    return svc.request(base, "txt2img")


def run(svc, r, on_step=None, owner=None):
    job = svc.jobs.new(owner)
    return svc.generate(r, owner=owner, listener=on_step, job=job), job


# ---- engine: skip, interrupt, previews -------------------------------------------------------

def test_skip_moves_to_the_next_batch_image(service):
    full, _ = run(service, req(service, seed=50, n_iter=3))
    seen = []

    def skip_first(job):
        seen.append((job.image_index, job.step))
        if job.image_index == 0 and job.step == 2:
            job.skip()

    r, job = run(service, req(service, seed=50, n_iter=3), skip_first)
    assert r.seeds == [51, 52]                          # batch 0 dropped, 1 and 2 made
    assert not r.interrupted
    for a, b in zip(r.images, full.images[1:]):
        assert np.array_equal(px(a), px(b))             # the following images are untouched
    assert (0, 3) not in seen and (1, 4) in seen and (2, 4) in seen


def test_interrupt_keeps_finished_images_and_the_stopped_one(service):
    full, _ = run(service, req(service, seed=60, n_iter=3))

    def stop(job):
        if job.image_index == 1 and job.step == 2:
            job.interrupt()

    r, job = run(service, req(service, seed=60, n_iter=3), stop)
    assert r.interrupted
    assert r.seeds == [60, 61]                          # batch 2 never started
    assert np.array_equal(px(r.images[0]), px(full.images[0]))
    assert "Interrupted at step: 2/4" in r.infotexts[1]
    assert "Interrupted" not in r.infotexts[0]
    assert not np.array_equal(px(r.images[1]), px(full.images[1]))


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M"])
def test_manager_is_usable_after_an_interrupt_at_step_k(service, sampler):
    before, _ = run(service, req(service, seed=70, sampler_name=sampler))

    def stop(job):
        if job.step == 2:
            job.interrupt()

    cut, _ = run(service, req(service, seed=70, sampler_name=sampler), stop)
    assert cut.interrupted and len(cut.images) == 1
    after, job = run(service, req(service, seed=70, sampler_name=sampler))
    assert not after.interrupted and job.step == 4
    assert np.array_equal(px(after.images[0]), px(before.images[0]))


def test_an_interrupted_queued_job_makes_nothing(service):
    job = service.jobs.new("someone")
    job.interrupt()
    r = service.generate(req(service), owner="someone", job=job)
    assert r.interrupted and r.images == []


def test_previews_are_produced_while_sampling(service):
    previews = []

    def watch(job):
        if job.preview is not None and job.preview_step == job.step:
            previews.append((job.step, job.preview.size, job.preview_kind))

    r, job = run(service, req(service, steps=4, batch_size=2), watch)
    # every step but the last (the final image follows at once): steps 1, 2, 3
    assert [p[0] for p in previews] == [1, 2, 3]
    assert all(size == (128, 64) for _, size, _ in previews)  # the batch of two side by side
    assert {p[2] for p in previews} == {"approx"}
    assert job.preview_count == 3


def test_preview_every_zero_turns_previews_off(models_dir, tmp_path):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu", preview_every=0))
    r, job = run(svc, req(svc, steps=4))
    assert job.preview_count == 0 and len(r.images) == 1


def test_status_text_shows_queue_position_then_steps():
    job = Job(owner="a")
    job.queue_position = 2
    assert "2 ahead" in job.status_text()
    job.start_batch(0, 2)
    job.step, job.total_steps = 3, 10
    text = job.status_text()
    assert "batch 1/2" in text and "step 3/10" in text


# ---- TAESD and the linear approximation ------------------------------------------------------

def tiny_taesd(seed=0):
    from diffusers import AutoencoderTiny
    torch.manual_seed(seed)
    return AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                           num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).eval()


def test_taesd_folder_is_found_and_decodes_like_the_model(tmp_path):
    from webui.engine.previews import Previewer
    model = tiny_taesd()
    model.save_pretrained(tmp_path / "VAE-approx" / "taesd")
    p = Previewer(tmp_path)
    assert p.kind("sd1") == "taesd"
    assert p.kind("sdxl") == "approx"                    # no taesdxl there: the approximation
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ((model.decode(lat).sample + 1) / 2).clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).numpy()
    got = p.render(lat, "sd1", size=(64, 64))
    assert got.size == (64, 64)
    assert np.abs(px(got) - want.astype(np.int16)).max() <= 1
    assert Previewer(tmp_path, mode="approx").kind("sd1") == "approx"
    assert Previewer(tmp_path, mode="off").kind("sd1") is None


def test_taesd_decoder_file_in_original_layout_loads(tmp_path):
    """The published taesd_decoder files are an nn.Sequential whose index 0 is a clamp."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file
    from webui.engine.previews import find_taesd, load_taesd
    torch.manual_seed(3)
    source = AutoencoderTiny().eval()
    original = {f"{int(k.split('.')[1]) + 1}.{k.split('.', 2)[2]}": v.contiguous()
                for k, v in source.decoder.state_dict().items()}
    folder = tmp_path / "VAE-approx"
    folder.mkdir()
    save_file(original, str(folder / "taesdxl_decoder.safetensors"))
    path = find_taesd(folder, "sdxl")
    loaded = load_taesd(path).eval()
    lat = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert torch.allclose(loaded.decode(lat).sample, source.decode(lat).sample, atol=1e-5)


def test_engine_uses_taesd_for_previews_when_present(models_dir, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    tiny_taesd().save_pretrained(root / "VAE-approx" / "taesd")
    svc = Service.create(Settings(models_dir=root, outputs_dir=tmp_path / "out", device="cpu", preview_every=2))
    kinds = []
    r, job = run(svc, req(svc, steps=4), lambda j: kinds.append(j.preview_kind) if j.preview is not None else None)
    assert job.preview_count == 1 and set(kinds) == {"taesd"}  # step 2 of 4 (step 4 is the final image)
    assert len(r.images) == 1


def test_fitted_latent_rgb_factors_describe_the_vae(service):
    from webui.engine.previews import LATENT_RGB, fit_latent_rgb
    vae = service.manager.active.pipe.vae
    lat = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    w, b = fit_latent_rgb(vae, lat)
    with torch.no_grad():
        img = vae.decode(lat / vae.config.scaling_factor).sample
    target = torch.nn.functional.adaptive_avg_pool2d((img + 1) / 2, (8, 8)).permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    x = lat.permute(0, 2, 3, 1).reshape(-1, 4).numpy()
    fitted = np.abs(x @ w + b - target).mean()
    shipped = np.abs(x @ LATENT_RGB["sd1"][0] + LATENT_RGB["sd1"][1] - target).mean()
    assert w.shape == (4, 3) and fitted < shipped


# ---- through a running server: sessions, interrupt, skip, rate limit -------------------------

@pytest.fixture(scope="module")
def server(service):
    from webui.ui import build_ui
    demo = build_ui(service)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    yield url
    demo.close()


def client(url):
    from gradio_client import Client
    return Client(url, verbose=False)


def submit(c, **fields):
    base = dict(prompt="portrait", negative_prompt="", steps=3, cfg_scale=7, seed=1, width=64, height=64,
                sampler_name="Euler", scheduler="Automatic", batch_size=1, n_iter=1,
                hr_prompt="", hr_negative_prompt="", face_detail_prompt="", face_detail_negative_prompt="")
    base.update(fields)
    return c.submit(**base, api_name="/txt2img")


def owner(c) -> str:
    """The server-side owner key of a gradio_client's page (its session cookie + session_hash)."""
    from webui.serving.identity import SESSION_COOKIE, ui_owner
    return ui_owner(None, c.cookies.get(SESSION_COOKIE, ""), c.session_hash)


def wait_for(service, session, cond, timeout=120):
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = service.jobs.latest_for(session)
        if job is not None and cond(job):
            return job
        time.sleep(0.02)
    raise AssertionError("the job never got there")


def seeds_of(gallery) -> list[int]:
    return [int(infotext_to_fields(read_infotext(item["image"])[0])["seed"]) for item in gallery]


def test_two_sessions_generating_at_once_get_their_own_images(server, service):
    a, b = client(server), client(server)
    ja, jb = submit(a, seed=100, n_iter=2), submit(b, seed=200, n_iter=2)
    ga, info_a = ja.result()
    gb, info_b = jb.result()
    assert seeds_of(ga) == [100, 101] and "Seed: 100," in info_a
    assert seeds_of(gb) == [200, 201] and "Seed: 200," in info_b
    # each session's history holds its own images only
    hist_a = [t for _, t in service.jobs.history(owner(a))]
    assert hist_a and all("Seed: 10" in t for t in hist_a)
    assert all("Seed: 20" in t for _, t in service.jobs.history(owner(b)))


def test_interrupt_stops_only_the_pressing_sessions_job(server, service):
    a, b = client(server), client(server)
    ja = submit(a, seed=300, steps=150, n_iter=3)
    job_a = wait_for(service, owner(a), lambda j: j.state == "running" and j.step >= 1)
    jb = submit(b, seed=400, n_iter=2)                  # waits for the GPU behind A
    b.predict(api_name="/interrupt")                    # B has nothing running: A must go on
    assert not job_a.interrupted and job_a.state == "running"
    a.predict(api_name="/interrupt")
    ga, info_a = ja.result()
    assert job_a.interrupted and len(ga) == 1 and "Interrupted at step" in info_a
    gb, info_b = jb.result()                            # B's job runs to completion
    assert seeds_of(gb) == [400, 401] and "Interrupted" not in info_b


def test_skip_moves_to_the_next_image_through_the_ui(server, service):
    a = client(server)
    ja = submit(a, seed=500, steps=150, n_iter=2)
    wait_for(service, owner(a), lambda j: j.state == "running" and j.image_index == 0 and j.step >= 1)
    a.predict(api_name="/skip")
    wait_for(service, owner(a), lambda j: j.image_index == 1 and j.step >= 1)
    a.predict(api_name="/interrupt")
    gallery, info = ja.result()
    assert seeds_of(gallery) == [501]                   # image 1 skipped, image 2 stopped and kept
    assert "Interrupted at step" in info


def test_previews_stream_to_the_gallery_while_running(server):
    a = client(server)
    job = submit(a, seed=7, steps=4)
    job.result()
    updates = job.outputs()
    previews = [u for u in updates[:-1] if isinstance(u[0], list) and "preview" in (u[0][0].get("caption") or "")]
    assert len(previews) >= 1
    assert any("step" in u[1] for u in updates[:-1])    # progress text while running
    assert updates[-1][1].startswith("portrait\nSteps: 4")


def test_rate_limit_refuses_with_a_message(server, service):
    from webui.serving.ratelimit import RateLimiter
    a = client(server)
    service.rate = RateLimiter(1)
    try:
        submit(a, seed=9).result()
        with pytest.raises(Exception, match="rate limit: at most 1 generations per minute"):
            submit(a, seed=10).result()
    finally:
        service.rate = None


def test_rate_limiter_window():
    from webui.errors import UserError
    from webui.serving.ratelimit import RateLimiter
    now = [0.0]
    rl = RateLimiter(2, clock=lambda: now[0])
    rl.admit("x")
    rl.admit("x")
    with pytest.raises(UserError, match="try again in 60 s"):
        rl.admit("x")
    rl.admit("y")                                       # another client is not affected
    now[0] = 60.0
    rl.admit("x")                                       # the window moved on


def test_history_browser_lists_dates_and_infotexts(server, service):
    from webui.ui.history import fields_for, images_of_date, infotext_of, output_dates
    a = client(server)
    submit(a, seed=4242).result()
    out = service.settings.outputs_dir
    day = output_dates(out)[0]
    files = images_of_date(out, day)
    assert any(p.name.endswith("-4242.png") for p in files)
    text = infotext_of(next(p for p in files if p.name.endswith("-4242.png")))
    assert fields_for(text)["seed"] == 4242
    assert images_of_date(out, "../../etc") == []


# ---- app, auth, Spaces, safety filter --------------------------------------------------------

def test_app_builds_its_blocks_without_zero_gpu(monkeypatch, models_dir, tmp_path):
    import gradio as gr
    import app  # noqa: F401 - the Space's entry point must import cleanly
    from webui.ui import build_ui
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu"), load_model=False)
    assert svc.gpu_stream == svc.generate_stream       # not wrapped off Spaces
    assert isinstance(build_ui(svc), gr.Blocks)


def test_zero_gpu_wraps_with_a_duration_from_the_request(monkeypatch, service):
    """A stand-in `spaces` module (the real one exists only on Spaces) records the duration."""
    import sys
    import types
    from webui.serving.spaces import estimate_seconds, gpu
    seen = {}

    def GPU(duration):
        def deco(fn):
            def wrapper(*args, **kwargs):
                seen["duration"] = duration(*args, **kwargs)
                return fn(*args, **kwargs)
            return wrapper
        return deco

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    small, big = req(service, steps=20, width=512, height=512), req(service, steps=30, width=1024, height=1024,
                                                                       batch_size=2)
    assert gpu(lambda r: "ran")(small) == "ran" and seen["duration"] == estimate_seconds(small)
    assert 15 <= estimate_seconds(small) < estimate_seconds(big) <= 300
    monkeypatch.delenv("SPACES_ZERO_GPU")
    f = lambda r: r  # noqa: E731
    assert gpu(f) is f


def test_auth_pairs_and_file(tmp_path):
    from webui.settings import parse_auth, settings_from_args
    assert parse_auth("ann:pw1, bob:p:w2") == (("ann", "pw1"), ("bob", "p:w2"))
    f = tmp_path / "users.txt"
    f.write_text("# artists\nann:pw1\n\nbob:secret\n", encoding="utf-8")
    assert parse_auth(str(f)) == (("ann", "pw1"), ("bob", "secret"))
    assert settings_from_args(["--auth", str(f)]).auth == (("ann", "pw1"), ("bob", "secret"))
    for bad in ("justaname", "ann:", ":pw"):
        with pytest.raises(SystemExit, match="user:password"):
            parse_auth(bad)
    s = settings_from_args(["--rate-limit", "5", "--rate-limit-by", "session", "--preview-every", "2"])
    assert (s.rate_limit, s.rate_limit_by, s.preview_every, s.safety_filter) == (5, "session", 2, False)


def tiny_safety_checker(folder: Path, flag_everything: bool) -> None:
    """A random-weight stand-in with the real class; thresholds decide: -5 flags all, +5 none."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor
    cfg = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, vocab_size=100),
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8),
                     projection_dim=8)
    torch.manual_seed(0)
    model = StableDiffusionSafetyChecker(cfg)
    with torch.no_grad():
        model.concept_embeds_weights.fill_(-5.0 if flag_everything else 5.0)
        model.special_care_embeds_weights.fill_(5.0)
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def test_safety_filter_seam_with_a_tiny_stand_in(models_dir, tmp_path, service):
    from webui.models.safety import SafetyFilter, load_safety_filter
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    with pytest.raises(SystemExit, match="cannot be enabled"):
        load_safety_filter(root)
    tiny_safety_checker(root / "safety_checker", flag_everything=True)
    svc = Service.create(Settings(models_dir=root, outputs_dir=tmp_path / "out", device="cpu", safety_filter=True))
    r = svc.generate(req(svc, n_iter=2, save_images=True))
    assert r.images == [] and r.paths == [] and any("safety filter hid 2" in w for w in r.warnings)
    lenient = tmp_path / "lenient"
    tiny_safety_checker(lenient, flag_everything=False)
    kept, _ = run(service, req(service, n_iter=2))
    assert SafetyFilter(lenient).apply(kept) == 0 and len(kept.images) == 2
