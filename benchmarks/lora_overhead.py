"""What a LoRA costs per request: the first load, switching the active set on a cached
adapter, and the denoising time with a LoRA active (unfused) against none.

Full-size SD1.5 architecture with random weights (no download), fp16 on the GPU when there is
one; a random rank-R LoRA on every attention projection of the UNet and text encoder, saved in
kohya format and loaded the way the engine does (webui.engine.extensions.lora.AdapterSet):

    python benchmarks/lora_overhead.py [--rank 32] [--steps 20] [--size 512] [--runs 5]
    python benchmarks/lora_overhead.py --tiny --size 64 --steps 4   # the tiny model, CPU-friendly
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="the tiny test model instead of the SD1.5 size")
    a = ap.parse_args()

    import diffusers
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from webui.models import checkpoint_configs as cc
    from webui.models import checkpoints as ck
    from webui.engine.extensions.lora import AdapterSet, LoraFile

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if dev == "cuda" else torch.float32
    if a.tiny:
        from webui.models.tiny_models import build_tiny_pipeline
        pipe = build_tiny_pipeline("sd1").to(dev, dtype)
    else:
        tok = ck.tokenizers_for("sd1")["tokenizer"]
        te_cfg = cc.derive_config("sd1", "text_encoder", {"vocab_size": len(tok)})
        pipe = diffusers.StableDiffusionPipeline(
            unet=diffusers.UNet2DConditionModel.from_config(cc.shipped_config("sd1", "unet")),
            vae=diffusers.AutoencoderKL.from_config(cc.shipped_config("sd1", "vae")),
            text_encoder=CLIPTextModel(CLIPTextConfig(**te_cfg)), tokenizer=tok,
            scheduler=diffusers.EulerDiscreteScheduler.from_config(cc.shipped_config("sd1", "scheduler")),
            **ck.no_safety_checker("sd1")).to(dev, dtype)
    pipe.set_progress_bar_config(disable=True)

    # A kohya LoRA on every attention projection (what most Civitai LoRAs touch).
    sd = {}
    g = torch.Generator().manual_seed(0)
    for name, m in list(pipe.unet.named_modules()) + list(pipe.text_encoder.named_modules()):
        if not isinstance(m, torch.nn.Linear):
            continue
        is_unet = any(name.startswith(p) for p in ("down_blocks", "up_blocks", "mid_block"))
        if is_unet and name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v", "0") and "attn" in name:
            key = "lora_unet_" + name.replace(".", "_")
        elif not is_unet and name.endswith(("q_proj", "k_proj", "v_proj", "out_proj")):
            key = "lora_te_text_model_" + name.replace(".", "_")
        else:
            continue
        sd[f"{key}.lora_down.weight"] = 0.01 * torch.randn(a.rank, m.in_features, generator=g, dtype=torch.float16)
        sd[f"{key}.lora_up.weight"] = 0.01 * torch.randn(m.out_features, a.rank, generator=g, dtype=torch.float16)
        sd[f"{key}.alpha"] = torch.tensor(float(a.rank))
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "bench.safetensors"
    save_file(sd, str(path))
    lora = LoraFile("bench", "bench", path)
    adapters = AdapterSet(pipe)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    def denoise() -> float:
        sync()
        t = time.perf_counter()
        pipe(prompt="portrait", num_inference_steps=a.steps, width=a.size, height=a.size, output_type="latent",
             generator=torch.Generator("cpu").manual_seed(1))
        sync()
        return time.perf_counter() - t

    denoise()  # warm-up
    base = [denoise() for _ in range(a.runs)]
    t = time.perf_counter()
    adapters.activate([(lora, 0.8)])
    sync()
    first_load = time.perf_counter() - t
    denoise()
    with_lora = [denoise() for _ in range(a.runs)]
    switch = []
    for i in range(10):
        t = time.perf_counter()
        adapters.activate([(lora, 0.5 + 0.05 * i)] if i % 2 else [])
        sync()
        switch.append(time.perf_counter() - t)
    adapters.activate([])
    off = [denoise() for _ in range(a.runs)]

    name = torch.cuda.get_device_name() if dev == "cuda" else "CPU"
    arch = "tiny SD1 layout" if a.tiny else "SD1.5 architecture"
    print(f"device: {name}, dtype {dtype}, {arch} (random weights), {a.size}x{a.size}, "
          f"{a.steps} steps Euler CFG 7.5; LoRA rank {a.rank} on {len(sd) // 3} projections")
    print(f"denoise, never any LoRA:        median {statistics.median(base) * 1000:.0f} ms")
    print(f"denoise, LoRA active (unfused): median {statistics.median(with_lora) * 1000:.0f} ms")
    print(f"denoise, LoRA loaded but off:   median {statistics.median(off) * 1000:.0f} ms")
    print(f"first load of the LoRA file:    {first_load * 1000:.0f} ms")
    print(f"switch the active set (cached): median {statistics.median(switch) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
