"""Shared pytest fixtures. Everything runs offline on the CPU with tiny random-weight models."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: never reach for the network in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """family -> TinyModel (diffusers folder + original-layout .safetensors), built once per session."""
    from webui.models.tiny_models import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(family, out) for family in ("sd1", "sd1-inpaint", "sdxl")}


# ---- LoRA fixtures ---------------------------------------------------------------------------

LORA_RANK, LORA_ALPHA = 4, 8  # alpha != rank: both file formats must carry the scale


def to_kohya(diffusers_sd: dict, alpha: float) -> dict:
    """A diffusers-format LoRA state dict (`unet.<module>.lora_A.weight`) in kohya names
    (`lora_unet_<module_with_underscores>.lora_down.weight`, `.lora_up.weight`, `.alpha`)."""
    import re

    import torch

    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
    if any(k.startswith("text_encoder_2.") for k in diffusers_sd):
        prefixes["text_encoder"] = "lora_te1_"
    out = {}
    for key, value in diffusers_sd.items():
        m = re.fullmatch(r"(unet|text_encoder_2|text_encoder)\.(.+)\.lora_([AB])\.weight", key)
        assert m, key
        module = m[2]
        if m[1] != "unet" and not module.startswith("text_model."):
            module = "text_model." + module  # the names real kohya files carry
        base = prefixes[m[1]] + module.replace(".", "_")
        out[f"{base}.lora_{'down' if m[3] == 'A' else 'up'}.weight"] = value.contiguous()
        out[f"{base}.alpha"] = torch.tensor(float(alpha))
    return out


def build_lora(family: str, seed: int, out_dir, name: str, text_encoder: bool = True):
    """Random (non-zero) LoRA for a tiny model, saved as out_dir/<name>.safetensors (diffusers
    format) and out_dir/<name>_kohya.safetensors (same weights, kohya format)."""
    import shutil
    import tempfile
    from pathlib import Path

    import torch
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    from webui.models.tiny_models import build_tiny_pipeline

    pipe = build_tiny_pipeline(family)
    unet_cfg = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, init_lora_weights=False,
                          target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    te_cfg = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(unet_cfg)
        layers = {"unet_lora_layers": get_peft_model_state_dict(pipe.unet),
                  "unet_lora_adapter_metadata": unet_cfg.to_dict()}
        if text_encoder:
            for part in ("text_encoder", "text_encoder_2"):
                module = getattr(pipe, part, None)
                if module is not None:
                    module.add_adapter(te_cfg)
                    layers[f"{part}_lora_layers"] = get_peft_model_state_dict(module)
                    layers[f"{part}_lora_adapter_metadata"] = te_cfg.to_dict()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir))
    type(pipe).save_lora_weights(tmp, **layers)
    shutil.move(tmp / "pytorch_lora_weights.safetensors", out_dir / f"{name}.safetensors")
    shutil.rmtree(tmp)
    sd = load_file(str(out_dir / f"{name}.safetensors"))
    save_file(to_kohya(sd, LORA_ALPHA), str(out_dir / f"{name}_kohya.safetensors"))
    return out_dir / f"{name}.safetensors", out_dir / f"{name}_kohya.safetensors"


@pytest.fixture(scope="session")
def tiny_loras(tmp_path_factory):
    """name -> (diffusers file, kohya file): 'face' and 'light' for sd1 (UNet + text encoder),
    'xl' for the tiny SDXL (UNet + both text encoders)."""
    out = tmp_path_factory.mktemp("tiny-loras")
    return {
        "face": build_lora("sd1", 11, out, "face"),
        "light": build_lora("sd1", 12, out, "light", text_encoder=False),
        "xl": build_lora("sdxl", 13, out, "xl"),
    }


def _memo_runner(svc, seed: int, prompt: str):
    """generate(prompt, **fields) memoised by its arguments: tests that compare many variants
    of one tiny request (1 step, 64x64, fixed seed) pay for each variant once."""
    cache = {}

    def go(prompt=prompt, **fields):
        key = (prompt, tuple(sorted(fields.items())))
        if key not in cache:
            base = dict(prompt=prompt, negative_prompt="blurry", seed=seed, steps=1, width=64, height=64,
                        sampler_name="Euler", save_images=False)
            base.update(fields)
            cache[key] = svc.generate(svc.request(base))
        return cache[key]

    return go


@pytest.fixture(scope="session")
def memo_runner():
    return _memo_runner


def _launch_app(service):
    from webui.ui import build_ui, launch_kwargs

    demo = build_ui(service)
    demo.queue(default_concurrency_limit=1)
    kwargs = launch_kwargs(service)
    kwargs.update(server_port=None, prevent_thread_lock=True, quiet=True)  # None: Gradio picks a free port
    _, url, _ = demo.launch(**kwargs)
    return demo, url.rstrip("/")


@pytest.fixture(scope="session")
def launch_app():
    """launch_app(service) -> (demo, url without trailing slash): the UI and REST API as app.py
    serves them, on a free loopback port. The caller closes the demo."""
    return _launch_app


@pytest.fixture(scope="module")
def server(service, launch_app):
    """The base URL of the module's `service`, served as app.py serves it (UI and REST API)."""
    demo, url = launch_app(service)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def http(server):
    """An httpx client for `server`."""
    import httpx

    with httpx.Client(base_url=server, timeout=120) as client:
        yield client
