"""Live progress, previews, Skip/Interrupt scoped to their owner, session history, rate limit,
auth parsing, the Spaces wrapper and the safety-filter seam -- on tiny offline models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from webui.image_meta import read_infotext
from webui.infotext import infotext_to_fields
from webui.jobs import Job
from webui.service import Service
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
