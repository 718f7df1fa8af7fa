"""Fast mode's CPU-runnable parts: the layout changes (channels_last, fused QKV, SDPA) keep the
pixels, and the compiled UNet is not recompiled by what changes on every request. Compilation
uses torch's counting backend here (inductor on the CPU would take minutes in CI); the shapes,
guards and wrappers under test are the ones the GPU path compiles."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from webui.engine import fast
from webui.engine.jobs import Job
from webui.serving.service import Service
from webui.settings import Settings, settings_from_args


@pytest.fixture(scope="module")
def models_dir(tiny_models, tiny_loras, tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "alpha.safetensors")
    (root / "Lora").mkdir()
    shutil.copy(tiny_loras["face"][1], root / "Lora" / "face.safetensors")  # UNet + text encoder
    return root


@pytest.fixture(scope="module")
def eager(models_dir):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=models_dir / "out", device="cpu"))
    yield svc
    svc.close()


def px(img):
    return np.asarray(img, dtype=np.int16)


def request(svc, **fields):
    base = dict(prompt="portrait, rim light", negative_prompt="blurry", seed=3, steps=3, width=64, height=64,
                sampler_name="Euler a", save_images=False)
    base.update(fields)
    return svc.request(base)


def same(a, b, tol=1):
    assert len(a.images) == len(b.images)
    for x, y in zip(a.images, b.images):
        assert np.abs(px(x) - px(y)).max() <= tol


def test_layout_changes_keep_the_pixels(models_dir, eager):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=models_dir / "out", device="cpu", fast=True))
    try:
        assert not svc.manager.compiling  # no inductor on the CPU: layout changes only
        unet = svc.manager.active.pipe.unet
        assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert any(type(p).__name__.startswith("Fused") for p in unet.attn_processors.values())
        same(svc.generate(request(svc)), eager.generate(request(eager)))
    finally:
        svc.close()


@pytest.fixture()
def counted(models_dir):
    """A fast-mode service whose compiles go to torch's counting backend, and the counter."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=models_dir / "out", device="cpu", fast=True),
                         load_model=False)
    counter = CompileCounter()
    svc.manager.compile_backend = counter
    yield svc, counter
    svc.close()
    torch._dynamo.reset()


def test_compiled_unet_compiles_once_per_shape(counted, eager):
    svc, counter = counted

    def check(compare=False, **fields):
        out = svc.generate(request(svc, **fields))
        if compare:  # pixels once per path: the compiled graph must still be the same function
            same(out, eager.generate(request(eager, **fields)))
        return counter.frame_count

    first = check(compare=True)
    assert first >= 1 and svc.manager.compiling
    # Seeds, prompts, samplers (int64 or float timesteps), CFG and steps: no recompile.
    assert check(seed=8, prompt="another face") == first
    assert check(sampler_name="DPM++ 2M", scheduler="Karras", cfg_scale=4, steps=4, compare=True) == first
    assert check(sampler_name="DDIM") == first
    # A new size compiles once; going back to a known size does not.
    bigger = check(width=72)
    assert bigger > first
    assert check() == bigger
    # Merged batches are padded to a bucket: 3 images and then 4 images share one shape (their
    # 6 and 5 distinct 75-token chunks share the text encoder's bucket of 8 rows too).
    reqs = [request(svc, seed=40 + i, prompt=f"face {i}", negative_prompt=f"blurry {i}") for i in range(3)]
    out = svc.manager.generate_many([(r, Job()) for r in reqs])
    after_three = counter.frame_count
    assert after_three > bigger
    same(out[2], eager.generate(request(eager, seed=reqs[2].seed, prompt=reqs[2].prompt,
                                        negative_prompt=reqs[2].negative_prompt)))
    reqs4 = [request(svc, seed=50 + i, prompt=f"hat {i}") for i in range(4)]
    svc.manager.generate_many([(r, Job()) for r in reqs4])
    assert counter.frame_count == after_three


def test_compiled_text_encoder_pads_chunk_batches_to_a_bucket(counted, eager):
    """The text encoder runs compiled too; its batch of chunks is padded to a bucket, so the
    number of distinct prompts in a batch compiles a handful of shapes, not one each, and the
    padding never changes a row."""
    svc, counter = counted
    encoder = svc.manager.ensure_model(None).pipe.text_encoder
    reference = eager.manager.active.pipe.text_encoder
    ids = torch.randint(0, 1000, (5, 77))
    with torch.no_grad():
        encoder(ids[:4], output_hidden_states=True)
        compiled = counter.frame_count
        assert compiled >= 1
        three = encoder(ids[:3], output_hidden_states=True)  # padded to 4 rows: no recompile
        assert counter.frame_count == compiled
        want = reference(ids[:3], output_hidden_states=True)
        assert three.last_hidden_state.shape == want.last_hidden_state.shape
        torch.testing.assert_close(three.last_hidden_state, want.last_hidden_state)
        torch.testing.assert_close(three.hidden_states[-2], want.hidden_states[-2])
        torch.testing.assert_close(three.pooler_output, want.pooler_output)
        encoder(ids, output_hidden_states=True)  # 5 rows: the bucket of 8 compiles once
        assert counter.frame_count > compiled


def test_lora_weight_changes_do_not_recompile(counted, eager):
    """A new <lora:name:weight> changes a tensor the compiled graphs read, not the graphs: no
    recompile (a minute on a GPU), and the pixels follow the new weight, as eager ones do."""
    svc, counter = counted

    def run(s, weight):
        return s.generate(request(s, prompt=f"portrait <lora:face:{weight}>"))

    run(svc, 0.6)
    compiled = counter.frame_count
    for weight in (0.9, 0.3):
        out = run(svc, weight)
        assert counter.frame_count == compiled
        same(out, run(eager, weight))
    # The weight shows in the pixels, so matching eager at each weight means the graph used it.
    assert np.abs(px(run(eager, 0.9).images[0]) - px(run(eager, 0.3).images[0])).max() > 10


def test_batch_buckets():
    assert [fast.batch_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17)] == [1, 2, 4, 4, 8, 8, 16, 16, 17]


def test_low_memory_flags():
    s = settings_from_args(["--lowvram"])
    assert (s.offload, s.vae_tiling) == ("sequential", True)
    s = settings_from_args(["--medvram"])
    assert (s.offload, s.vae_tiling) == ("model", True)
    s = settings_from_args(["--fast", "--warmup", "--no-batching"])
    assert s.fast and s.warmup and not s.batching and s.offload == "auto"
    # auto never offloads on the CPU (there is nothing to offload to).
    assert fast.choose_offload("auto", torch.device("cpu")) == "none"
    assert fast.choose_offload("model", torch.device("cpu")) == "model"
