"""The one GPU queue: owners take turns, compatible requests merge into one batch, and every
job gets its own result -- never another session's images."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from webui.serving.gpu_queue import GPUQueue, batch_key
from webui.engine.jobs import Job
from webui.request import GenerationRequest
from webui.serving.service import Service
from webui.settings import Settings


class RecordingManager:
    """Stands in for the GPU: records each batch it is given and answers per request."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def generate_many(self, items):
        self.batches.append([r.prompt for r, _ in items])
        return [ValueError(r.prompt) if r.prompt.startswith("bad") else f"result:{r.prompt}" for r, _ in items]


def submit_all(queue, specs):
    """Submit (owner, request) pairs while the queue is held, so they all wait together."""
    with queue.hold():
        entries = [queue.submit(req, Job(owner=owner)) for owner, req in specs]
    return entries


def test_small_owner_is_not_starved_by_a_big_one():
    mgr = RecordingManager()
    q = GPUQueue(mgr, batching=False)
    specs = [("A", GenerationRequest(prompt=f"a{i}")) for i in range(5)] + [("B", GenerationRequest(prompt="b0"))]
    with q.hold():
        entries = [q.submit(req, Job(owner=owner)) for owner, req in specs]
        # While waiting, B's job is second in line, not sixth.
        assert entries[-1].job.queue_position == 1
        assert [e.job.queue_position for e in entries[:5]] == [0, 2, 3, 4, 5]
    for e in entries:
        e.wait()
    order = [b[0] for b in mgr.batches]
    assert order.index("b0") == 1
    assert order == ["a0", "b0", "a1", "a2", "a3", "a4"]
    assert all(e.job.queue_position is None for e in entries)


def test_compatible_requests_of_different_owners_share_a_batch():
    mgr = RecordingManager()
    q = GPUQueue(mgr, max_batch=4)
    base = GenerationRequest(width=512, height=512, steps=20)
    entries = submit_all(q, [
        ("A", base.replace(prompt="a0", batch_size=2)),
        ("B", base.replace(prompt="b0", seed=7)),
        ("C", base.replace(prompt="c0", width=768)),          # other size: its own batch
        ("A", base.replace(prompt="a1", batch_size=2)),       # would exceed 4 images
        ("B", base.replace(prompt="b1", cfg_scale=5)),        # other CFG
    ])
    results = [e.wait() for e in entries]
    assert results == [f"result:{p}" for p in ("a0", "b0", "c0", "a1", "b1")]
    assert mgr.batches[0] == ["a0", "b0"]
    assert sorted(map(tuple, mgr.batches[1:])) == [("a1",), ("b1",), ("c0",)]


def test_batch_key_separates_what_changes_the_loop():
    r = GenerationRequest(prompt="x")
    assert batch_key(r) == batch_key(r.replace(prompt="y", seed=3, negative_prompt="z", batch_size=2))
    for change in (dict(steps=21), dict(sampler_name="Euler a"), dict(scheduler="Karras"), dict(cfg_scale=6.0),
                   dict(clip_skip=2), dict(width=640), dict(sd_model_checkpoint="other"),
                   dict(prompt="x <lora:face:0.8>")):
        assert batch_key(r.replace(**change)) != batch_key(r), change
    assert batch_key(r.replace(n_iter=2)) is None
    assert batch_key(r.replace(task="img2img")) is None
    assert batch_key(r.replace(enable_hr=True)) is None


def test_an_error_reaches_only_its_own_caller():
    mgr = RecordingManager()
    q = GPUQueue(mgr)
    entries = submit_all(q, [("A", GenerationRequest(prompt="bad one")), ("B", GenerationRequest(prompt="fine"))])
    with pytest.raises(ValueError, match="bad one"):
        entries[0].wait()
    assert entries[1].wait() == "result:fine"
    assert mgr.batches == [["bad one", "fine"]]


def test_closed_queue_refuses_new_jobs():
    q = GPUQueue(RecordingManager())
    assert q.run(GenerationRequest(prompt="x"), Job()) == "result:x"
    q.close()
    with pytest.raises(RuntimeError):
        q.submit(GenerationRequest(prompt="y"), Job())


# ---- end to end with the real engine ------------------------------------------------------


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("queue-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    svc = Service.create(Settings(models_dir=root, outputs_dir=root / "out", device="cpu"))
    yield svc
    svc.close()


def px(img):
    return np.asarray(img, dtype=np.int16)


def test_two_sessions_at_once_each_get_their_own_images(service):
    fields = dict(steps=3, width=64, height=64, sampler_name="Euler", save_images=False)
    mine = service.request({**fields, "prompt": "portrait of a sailor", "seed": 11})
    theirs = service.request({**fields, "prompt": "a cat in a hat", "seed": 22, "batch_size": 2})
    results = {}
    before = service.queue.batches_run

    def run(owner, req):
        results[owner] = service.generate(req, owner=owner)

    with service.queue.hold():
        threads = [threading.Thread(target=run, args=a) for a in (("s1", mine), ("s2", theirs))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while service.queue.pending() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    for t in threads:
        t.join(timeout=300)
    assert service.queue.batches_run == before + 1  # they really shared one UNet batch
    assert results["s1"].seeds == [11] and results["s2"].seeds == [22, 23]
    assert "portrait of a sailor" in results["s1"].infotexts[0]
    assert all("a cat in a hat" in t for t in results["s2"].infotexts)
    alone = {"s1": service.generate(mine), "s2": service.generate(theirs)}
    for owner in ("s1", "s2"):
        assert len(results[owner].images) == len(alone[owner].images)
        for a, b in zip(results[owner].images, alone[owner].images):
            assert np.abs(px(a) - px(b)).max() <= 1
