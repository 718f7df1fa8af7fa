"""Per-request overhead of the pipeline manager against calling diffusers directly.

Runs on the CPU with the tiny demo model (no download), same prompt, size, steps and
sampler both ways, and prints the median wall time of each and the difference:

    python benchmarks/manager_overhead.py [--runs 15] [--steps 4] [--size 64]

The manager's extra work per request: validating the request, building a per-request
scheduler (a cached prototype, deep-copied) and pipeline object, A1111 prompt encoding,
CPU-seeded generators, the decode with a NaN check, and the infotext. Saving PNGs is left
out on both sides (save_images=False).
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
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--new-prompt", action="store_true",
                    help="a different prompt each run, so the manager's prompt-embedding cache never hits")
    args = ap.parse_args()

    import torch
    from diffusers import EulerDiscreteScheduler

    from webui.serving.service import Service
    from webui.settings import Settings

    root = Path(tempfile.mkdtemp())
    svc = Service.create(Settings(models_dir=root / "models", outputs_dir=root / "outputs", demo=True, device="cpu"))
    pipe = svc.manager.active.pipe
    fields = dict(prompt="portrait of an old sailor, oil painting", negative_prompt="blurry", seed=1,
                  steps=args.steps, width=args.size, height=args.size, sampler_name="Euler",
                  scheduler="Uniform", save_images=False)

    counter = iter(range(10**9))

    def prompt():
        return fields["prompt"] + (f", take {next(counter)}" if args.new_prompt else "")

    def direct():
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
        pipe(prompt(), negative_prompt=fields["negative_prompt"], num_inference_steps=args.steps,
             width=args.size, height=args.size, guidance_scale=7.0,
             generator=torch.Generator("cpu").manual_seed(1)).images[0]

    def managed():
        svc.generate(svc.request({**fields, "prompt": prompt()}))

    for fn in (direct, managed):  # warm-up
        fn()
    times = {"diffusers pipeline": [], "manager (Service.generate)": []}
    for _ in range(args.runs):  # interleaved so load on the machine hits both alike
        for name, fn in (("diffusers pipeline", direct), ("manager (Service.generate)", managed)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"tiny SD1.5-layout model, {args.size}x{args.size}, {args.steps} steps, Euler, CFG 7, CPU, "
          f"{args.runs} runs, torch threads {torch.get_num_threads()}"
          f"{', a new prompt every run' if args.new_prompt else ', the same prompt every run'}")
    for k, v in med.items():
        print(f"  {k:30s} median {v:8.1f} ms")
    print(f"  overhead per request           {med['manager (Service.generate)'] - med['diffusers pipeline']:8.1f} ms")


if __name__ == "__main__":
    main()
