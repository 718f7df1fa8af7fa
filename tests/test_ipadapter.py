"""IP-Adapter variants (base, plus, plus-face, full-face) as tiny random-weight files in the
real key layouts, the image encoder chosen by what each reads, and IP-Adapter together with a
LoRA and a ControlNet unit on the shared UNet."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_controlnet import build_tiny_ip_adapter, cpu_service, face_ref, gen, px, sd1_models_dir, unit
from webui.errors import UserError
from webui.serving.service import Service
from webui.settings import Settings

VARIANTS = (("base", ".safetensors"), ("plus", ".safetensors"), ("plus-face", ".bin"), ("full-face", ".bin"))


@pytest.fixture(scope="module")
def models_dir(tiny_models, tiny_loras, tmp_path_factory) -> Path:
    root = sd1_models_dir(tiny_models, tmp_path_factory, "ip-models")
    (root / "Lora").mkdir()
    shutil.copy(tiny_loras["face"][0], root / "Lora" / "face.safetensors")
    ip = root / "ipadapter"
    ip.mkdir()
    for variant, suffix in VARIANTS:
        build_tiny_ip_adapter("sd1", ip, variant, f"ip-{variant}", suffix)
    # An adapter reading a narrower encoder, which lives in a folder of its own name.
    build_tiny_ip_adapter("sd1", ip, "full-face", "ip-narrow", encoder="narrow-encoder", enc_hidden=24)
    build_tiny_ip_adapter("sd1", ip / "elsewhere", "plus", "ip-wide", enc_hidden=40)
    shutil.move(str(ip / "elsewhere" / "ip-wide.safetensors"), ip / "ip-wide.safetensors")
    shutil.rmtree(ip / "elsewhere")  # its encoder is nowhere to be found
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    return cpu_service(models_dir, tmp_path_factory)


def ref(model: str, weight: float = 1.0) -> dict:
    return {"model": model, "image": face_ref(), "weight": weight}


def differs(a, b) -> float:
    return float(np.abs(px(a) - px(b)).mean())


@pytest.mark.parametrize("variant", [v for v, _ in VARIANTS] + ["narrow"])
def test_each_variant_steers_and_weight_zero_is_plain(service, variant):
    plain = gen(service).images[0]
    zero = gen(service, ip_adapters=[ref(f"ip-{variant}", 0.0)]).images[0]
    one = gen(service, ip_adapters=[ref(f"ip-{variant}")]).images[0]
    assert np.abs(px(plain) - px(zero)).max() <= 1
    assert differs(plain, one) > 2
    assert gen(service).images[0].tobytes() == plain.tobytes()  # the shared UNet is as before


def test_two_variants_at_once(service):
    plus = gen(service, ip_adapters=[ref("ip-plus")]).images[0]
    both = gen(service, ip_adapters=[ref("ip-plus"), ref("ip-full-face")])
    assert differs(plus, both.images[0]) > 2
    assert "IP-Adapter 1" in both.infotexts[0]


def test_missing_image_encoder_says_which_one(service, models_dir):
    with pytest.raises(UserError) as e:
        gen(service, ip_adapters=[ref("ip-wide")])
    msg = str(e.value)
    assert "hidden size 40" in msg and str(models_dir / "ipadapter" / "image_encoder") in msg
    assert gen(service).images  # nothing left half-attached


def test_ip_adapter_lora_and_controlnet_together(service):
    lora, prompt = " <lora:face:1>", "portrait of a woman"
    plain = gen(service).images[0]
    all_three = gen(service, prompt=prompt + lora, units=[unit()], ip_adapters=[ref("ip-plus")])
    without_ip = gen(service, prompt=prompt + lora, units=[unit()]).images[0]
    without_lora = gen(service, prompt=prompt, units=[unit()], ip_adapters=[ref("ip-plus")]).images[0]
    without_cn = gen(service, prompt=prompt + lora, ip_adapters=[ref("ip-plus")]).images[0]
    for other in (without_ip, without_lora, without_cn):
        assert differs(all_three.images[0], other) > 2
    text = all_three.infotexts[0]
    assert "IP-Adapter 0" in text and "ControlNet 0" in text and "Lora hashes" in text
    # Nothing stays attached to the shared UNet: the plain request gives the plain picture again.
    assert gen(service).images[0].tobytes() == plain.tobytes()


def test_fast_mode_weight_change_does_not_recompile(models_dir, service, tmp_path):
    """In fast mode a new IP-Adapter weight changes weights, not the compiled UNet's graph (a
    recompile is a minute on a GPU), and the pixels follow it as eager ones do."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    fast = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu", fast=True),
                          load_model=False)
    counter = CompileCounter()
    fast.manager.compile_backend = counter
    try:
        gen(fast, ip_adapters=[ref("ip-plus", 0.6)])
        compiled = counter.frame_count
        for weight in (0.9, 0.3):
            out = gen(fast, ip_adapters=[ref("ip-plus", weight)]).images[0]
            assert counter.frame_count == compiled
            assert np.abs(px(out) - px(gen(service, ip_adapters=[ref("ip-plus", weight)]).images[0])).max() <= 1
        assert differs(gen(service, ip_adapters=[ref("ip-plus", 0.9)]).images[0],
                       gen(service, ip_adapters=[ref("ip-plus", 0.3)]).images[0]) > 1
    finally:
        fast.close()
        torch._dynamo.reset()
