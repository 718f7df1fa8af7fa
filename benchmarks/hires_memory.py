"""Peak GPU memory and time per stage for hires fix and the face detail pass, and the VAE
decode with and without tiling -- the numbers behind denoise.TILED_VAE_PIXELS.

Builds a random-weight SD1.5 model from the shipped configs (real layer sizes, fp16; the
pictures are noise but memory and time are those of a real checkpoint), then runs requests
through the Service like the UI does:

    python benchmarks/hires_memory.py [--steps 20] [--out results.json]   (GPU)
    python benchmarks/hires_memory.py --tiny --steps 4                   (CPU smoke test)

Needs a CUDA GPU. Memory is torch.cuda.max_memory_allocated per stage (memory.py), in MiB;
the weights (about 2.1 GB in fp16) are included in every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_sd15(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    cfg = ROOT / "webui" / "configs" / "sd1"
    torch.manual_seed(0)
    with torch.device("cuda"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg / "vae"))
        tok = CLIPTokenizer.from_pretrained(ROOT / "webui" / "configs" / "clip_tokenizer", model_max_length=77)
        tcfg = CLIPTextConfig.from_pretrained(cfg / "text_encoder")
        tcfg.vocab_size = len(tok)
        te = CLIPTextModel(tcfg)
    sched = DDIMScheduler.from_config(DDIMScheduler.load_config(cfg / "scheduler"))
    pipe = StableDiffusionPipeline(vae, te, tok, unet, sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder)
    return folder


def rrdbnet(path: Path) -> None:
    """A random full-size Real-ESRGAN x4 (RRDBNet nf=64, nb=23) file."""
    import torch
    sys.path.insert(0, str(ROOT / "tests"))
    from test_upscalers import rrdbnet_state_dict
    torch.save(rrdbnet_state_dict(nf=64, nb=23), path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="")
    ap.add_argument("--tiny", action="store_true",
                    help="smoke-test the script on the CPU with the tiny model at 1/8 of the sizes")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from webui.engine import denoise, runner
    from webui.engine.jobs import Job
    from webui.errors import UserError
    from webui.engine.memory import stage_peak
    from webui.serving.service import Service
    from webui.settings import Settings

    tmp = Path(tempfile.mkdtemp())
    models = tmp / "models"
    (models / "ESRGAN").mkdir(parents=True)
    t = time.perf_counter()
    if args.tiny:
        from webui.models.tiny_models import build_tiny_model
        folder = build_tiny_model("sd1", tmp / "tiny").folder
    else:
        folder = build_sd15(models / "Stable-diffusion" / "sd15-random")
    px = 64 if args.tiny else 512  # the base size
    rrdbnet(models / "ESRGAN" / "4x-RandomRRDB.pth")
    print(f"built random SD1.5 in {time.perf_counter() - t:.1f}s", flush=True)
    svc = Service.create(Settings(models_dir=models, outputs_dir=tmp / "out", model=str(folder),
                                  device="cpu" if args.tiny else "cuda"))
    mgr = svc.manager
    model = mgr.active
    device = "cpu (tiny smoke test)" if args.tiny else torch.cuda.get_device_name()
    rows = []

    def run(label, **fields):
        base = dict(prompt="portrait of an old sailor, oil painting", negative_prompt="blurry", seed=1,
                    steps=args.steps, sampler_name="DPM++ 2M", width=px, height=px, save_images=False)
        base.update(fields)
        task = "img2img" if "init_image" in base else "txt2img"
        try:
            mgr.generate(svc.request(base, task))  # warm-up (kernels, allocator)
            r = mgr.generate(svc.request(base, task))
        except (UserError, AttributeError, ImportError) as e:
            # e.g. spandrel missing for the ESRGAN row, or OpenCV 5 (no Haar cascades) for the face rows
            print(f"{label}: skipped ({type(e).__name__}: {e})", flush=True)
            rows.append(dict(label=label, skipped=f"{type(e).__name__}: {e}"))
            return
        row = dict(label=label, size=f"{r.images[0].width}x{r.images[0].height}",
                   memory_mib=r.memory, seconds={k: round(v, 3) for k, v in r.timings.items()},
                   warnings=r.warnings)
        rows.append(row)
        print(json.dumps(row), flush=True)

    run(f"base {px}")
    run("hires 2x Latent", enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.55)
    run("hires 2x Lanczos", enable_hr=True, hr_scale=2, hr_upscaler="Lanczos", denoising_strength=0.45)
    run("hires 2x ESRGAN (random RRDBNet x4)", enable_hr=True, hr_scale=2, hr_upscaler="4x-RandomRRDB",
        denoising_strength=0.45)
    run("hires 3x Latent (tiled VAE)", enable_hr=True, hr_scale=3, hr_upscaler="Latent", denoising_strength=0.55)
    run("hires 4x Latent (tiled VAE)", enable_hr=True, hr_scale=4, hr_upscaler="Latent", denoising_strength=0.55)
    run(f"base {px} batch 4 + hires 2x Lanczos (tiled VAE)", enable_hr=True, hr_scale=2, hr_upscaler="Lanczos",
        denoising_strength=0.45, batch_size=4)
    from skimage import data as skdata
    photo = Image.fromarray(skdata.astronaut())
    if args.tiny:  # keep the face pass at the tiny model's scale
        base_face = dict(face_detail_width=64, face_detail_height=64, width=512, height=512)
    else:
        base_face = {}
    run("face detail on a 512 photo (native size)", init_image=photo, denoising_strength=0.0, face_detail=True, **base_face)

    # The VAE decode alone, tiled or not, at the sizes hires fix produces.
    decode_rows = []
    ctx = runner.new_context(mgr, model, [svc.request(dict(prompt="x", width=px, height=px))], [Job()])
    for side in (2 * px, 3 * px, 4 * px):
        lat = torch.randn(1, 4, side // 8, side // 8, device=mgr.device, dtype=mgr.dtype)
        for tiled in (False, True):
            old = denoise.TILED_VAE_PIXELS
            denoise.TILED_VAE_PIXELS = 0 if tiled else 10**12
            rec: dict = {}
            try:
                denoise.decode(ctx, lat)  # warm-up
                mgr.sync()
                t = time.perf_counter()
                with stage_peak(mgr.device, rec, "decode"):
                    denoise.decode(ctx, lat)
                mgr.sync()
                secs = time.perf_counter() - t
            except torch.OutOfMemoryError:
                rec, secs = {"decode": float("nan")}, float("nan")
            finally:
                denoise.TILED_VAE_PIXELS = old
            row = dict(side=side, tiled=tiled, peak_mib=rec["decode"], seconds=round(secs, 3))
            decode_rows.append(row)
            print(json.dumps(row), flush=True)
    weights = sum(p.numel() * p.element_size() for m in (model.pipe.unet, model.pipe.vae, model.pipe.text_encoder)
                  for p in m.parameters()) / 2**20
    out = dict(device=device, torch=torch.__version__, steps=args.steps, weights_mib=round(weights, 1),
               runs=rows, vae_decode=decode_rows)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\n{device}, weights {weights:.0f} MiB, {args.steps} steps")
    for r in rows:
        mem = ", ".join(f"{k} {v:.0f}" for k, v in r["memory_mib"].items())
        print(f"| {r['label']} | {r['size']} | {mem} | {r['seconds'].get('total', 0):.2f} s |")
    for r in decode_rows:
        print(f"| VAE decode {r['side']}x{r['side']} | {'tiled' if r['tiled'] else 'whole'} | "
              f"{r['peak_mib']:.0f} MiB | {r['seconds']:.3f} s |")


if __name__ == "__main__":
    main()
