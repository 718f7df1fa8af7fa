"""Cross-user batching in the engine: a merged batch gives each request the images it would
get alone up to rounding -- the same seeds, noise (per-image CPU generators make it
independent of the batch), schedule and prompt embeddings, but convolution and matrix kernels
sum in an order that depends on the batch size, so a few pixel values may differ by one level
(the README's --no-batching row says the same) -- also after switching size, sampler and
checkpoint, and when one user stops their part of the batch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from webui.engine.jobs import Job
from webui.serving.service import Service
from webui.settings import Settings


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    shutil.copy(tiny_models["sdxl"].file, root / "Stable-diffusion" / "xl.safetensors")
    svc = Service.create(Settings(models_dir=root, outputs_dir=root / "out", device="cpu"))
    yield svc
    svc.close()


def px(img):
    return np.asarray(img, dtype=np.int16)


def request(svc, **fields):
    base = dict(steps=3, width=64, height=64, sampler_name="Euler a", cfg_scale=6, save_images=False)
    base.update(fields)
    return svc.request(base)


# What holds between a merged batch and solo runs (measured on these tiny models on CPU: at
# most 1 level, on 0.023% of pixel values over 2 models x 2 samplers x 6 batch mixes x 2 seeds).
MAX_LEVELS = 1           # largest difference of a pixel value, in 1/255 steps
MAX_DIFFERING = 0.005    # fraction of pixel values that may differ at all (about 20x the measured)


def assert_same_as_alone(svc, reqs, stats=None):
    together = svc.manager.generate_many([(r, Job(owner=f"user{i}")) for i, r in enumerate(reqs)])
    for req, res in zip(reqs, together):
        assert not isinstance(res, Exception), res
        alone = svc.manager.generate(req)
        assert res.seeds == alone.seeds
        assert res.infotexts == alone.infotexts  # its own prompt, seed and model in the metadata
        assert len(res.images) == len(alone.images) == req.batch_size
        for a, b in zip(res.images, alone.images):
            # Identical noise; a wider UNet batch rounds differently (batch-size-dependent kernels).
            d = np.abs(px(a) - px(b))
            assert d.max() <= MAX_LEVELS
            if stats is not None:
                stats["values"] = stats.get("values", 0) + d.size
                stats["differing"] = stats.get("differing", 0) + int((d > 0).sum())
    return together


def test_batch_of_different_prompts_and_seeds_equals_single_runs(service):
    reqs = [
        request(service, prompt="portrait of an old sailor, (oil painting:1.2)", negative_prompt="blurry", seed=5),
        request(service, prompt="a young woman, soft light", negative_prompt="", seed=9, batch_size=2),
        # Three 75-token chunks: encodes longer than the others, so it runs in a batch of its own
        # rather than padding the others' prompts with empty chunks.
        request(service, prompt=", ".join(["freckles"] * 120), seed=11),
    ]
    out = assert_same_as_alone(service, reqs)
    # Different prompts/seeds really are different pictures (nothing was shared by mistake).
    assert np.abs(px(out[0].images[0]) - px(out[1].images[0])).max() > 10


def test_merged_batches_differ_from_solo_runs_by_rounding_only(service):
    """The README's promise, over several seeds and batch mixes: at most one level on a pixel
    value, and on a small fraction of them."""
    stats: dict = {}
    prompts = ["portrait of an old sailor", "a young woman, soft light", "a face", "a hat, red"]
    for sampler, scheduler in (("Euler a", "Automatic"), ("DPM++ 2M", "Karras")):
        for mix, seed in (((1, 2), 3), ((2, 1, 1), 40), ((1, 5), 500)):
            reqs = [request(service, prompt=prompts[i % 4], seed=seed + 10 * i, batch_size=b,
                            sampler_name=sampler, scheduler=scheduler) for i, b in enumerate(mix)]
            assert_same_as_alone(service, reqs, stats)
    assert stats["values"] == 2 * (3 + 4 + 6) * 64 * 64 * 3
    assert stats["differing"] <= MAX_DIFFERING * stats["values"], stats


def test_switching_size_sampler_and_checkpoint_under_batching(service):
    for change in (dict(width=72, height=64, sampler_name="DPM++ 2M", scheduler="Karras", clip_skip=2),
                   dict(sd_model_checkpoint="xl")):
        reqs = [request(service, prompt="a face", seed=21, **change),
                request(service, prompt="a hat", seed=22, **change)]
        out = assert_same_as_alone(service, reqs)
        assert out[0].images[0].size == (change.get("width", 64), change.get("height", 64))
    service.manager.select("alpha")


def test_stopping_one_job_leaves_the_others_in_the_batch_untouched(service):
    keep = request(service, prompt="keep going", seed=31)
    stop = request(service, prompt="stop me", seed=32)
    stopper = Job(owner="b")
    stopper.listener = lambda job: job.step >= 1 and job.interrupt()
    out = service.manager.generate_many([(keep, Job(owner="a")), (stop, stopper)])
    assert not out[0].interrupted and out[1].interrupted
    alone = service.manager.generate(keep)
    assert np.abs(px(out[0].images[0]) - px(alone.images[0])).max() <= MAX_LEVELS
    # The stopped job keeps the picture as it was when it stopped: what a run of its own gives.
    solo = Job()
    solo.listener = lambda job: job.step >= 1 and job.interrupt()
    stopped_alone = service.manager.generate(stop, solo)
    assert np.abs(px(out[1].images[0]) - px(stopped_alone.images[0])).max() <= MAX_LEVELS
