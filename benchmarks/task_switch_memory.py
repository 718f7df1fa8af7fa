"""Does switching between txt2img, img2img and inpaint load or copy weights? Runs the three
tasks in turn on one checkpoint and prints the process RSS (and CUDA memory on a GPU) after
each, plus whether the UNet/VAE/text encoder objects and their storage stayed the same:

    python benchmarks/task_switch_memory.py                 # tiny demo model, CPU
    python benchmarks/task_switch_memory.py --full-size     # random-weight SD1.5 at full size

--full-size builds a full-size SD1.5 (860M-parameter UNet) with random weights in a temporary
folder first (no download), so a copy of the weights would show as about 1.7 GB (fp16) or
3.4 GB (fp32).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_full_size_sd15(out: Path) -> Path:
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from webui.models import checkpoint_configs as cc
    from webui.models import checkpoints as ck

    torch.manual_seed(0)
    pipe = ck.pipeline_class("sd1")(
        unet=diffusers.UNet2DConditionModel.from_config(cc.shipped_config("sd1", "unet")),
        vae=diffusers.AutoencoderKL.from_config(cc.shipped_config("sd1", "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**cc.shipped_config("sd1", "text_encoder"))),
        scheduler=getattr(diffusers, cc.shipped_config("sd1", "scheduler")["_class_name"]).from_config(
            cc.shipped_config("sd1", "scheduler")),
        **ck.tokenizers_for("sd1"), **ck.no_safety_checker("sd1"))
    target = out / "Stable-diffusion" / "random-sd15"
    pipe.save_pretrained(target)
    return target


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full-size", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from webui.serving.service import Service
    from webui.settings import Settings

    tmp = Path(tempfile.mkdtemp())
    model = str(build_full_size_sd15(tmp / "models")) if args.full_size else None
    svc = Service.create(Settings(models_dir=tmp / "models", outputs_dir=tmp / "out", demo=not model, model=model))
    loaded = svc.manager.active
    cuda = svc.manager.device.type == "cuda"
    mods = {k: loaded.pipe.components[k] for k in ("unet", "vae", "text_encoder")}

    def fingerprint():
        return {k: (id(m), next(m.parameters()).data_ptr()) for k, m in mods.items()}

    n = args.size
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (n, n, 3), dtype=np.uint8))
    mask = Image.new("L", (n, n), 0)
    mask.paste(255, (n // 4, n // 4, 3 * n // 4, 3 * n // 4))
    base = dict(prompt="portrait", steps=args.steps, width=n, height=n, seed=1, save_images=False)
    reqs = {"txt2img": svc.request(base, "txt2img"),
            "img2img": svc.request(dict(base, init_image=img), "img2img"),
            "inpaint": svc.request(dict(base, init_image=img, mask=mask), "inpaint")}

    weights_mb = sum(p.numel() * p.element_size() for m in mods.values() for p in m.parameters()) / 2**20
    print(f"device {svc.manager.device} ({torch.cuda.get_device_name() if cuda else 'CPU'}), "
          f"dtype {svc.manager.dtype}, weights {weights_mb:.0f} MB")
    for name, req in reqs.items():  # warm-up: first use of each pipeline class and kernel
        svc.generate(req)
    before, fp = rss_mb(), fingerprint()
    alloc0 = torch.cuda.memory_allocated() / 2**20 if cuda else 0.0
    print(f"after warm-up: RSS {before:.0f} MB" + (f", CUDA allocated {alloc0:.0f} MB" if cuda else ""))
    for r in range(args.rounds):
        for name, req in reqs.items():
            svc.generate(req)
            line = f"round {r + 1} {name:8s} RSS {rss_mb():.0f} MB ({rss_mb() - before:+.0f})"
            if cuda:
                line += f", CUDA allocated {torch.cuda.memory_allocated() / 2**20:.0f} MB"
            print(line)
    same = fingerprint() == fp and svc.manager.active is loaded and len(svc.manager.loaded_names()) == 1
    print(f"same module objects and storage after {args.rounds} rounds: {same}; "
          f"RSS change {rss_mb() - before:+.0f} MB")


if __name__ == "__main__":
    main()
