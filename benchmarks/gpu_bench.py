"""GPU benchmark: plain diffusers against this app's own path (Service.generate), same run.

Needs a CUDA GPU and no download: SD1.5 and SDXL are built from the shipped configs
(webui/configs) with random weights in fp16, saved once as diffusers folders in a scratch
models folder, and loaded by the app the way a user's checkpoint is. Usage:

    python benchmarks/gpu_bench.py --part sd15 --out results/      # SD1.5 measures
    python benchmarks/gpu_bench.py --part sdxl --out results/      # SDXL measures
    python benchmarks/gpu_bench.py --part api --out results/       # Gradio API overhead (any device)
    python benchmarks/gpu_bench.py --report results/*.json         # merged JSON of all parts

Each part writes results/<part>.json as it goes (a run cut short keeps what it measured).
Settings follow the targets: batch 1, CFG 7, DPM++ 2M Karras, fp16.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "portrait of an elderly fisherman, oil painting, (dramatic rim light:1.2)"
NEGATIVE = "lowres, blurry, (deformed hands:1.3)"


class Recorder:
    def __init__(self, path: Path, part: str):
        self.path = path
        self.data = {"part": part, "measures": {}, "env": {}, "log": []}

    def env(self, **kw):
        self.data["env"].update(kw)
        self.save()

    def put(self, key, **kw):
        self.data["measures"][key] = kw
        print(f"[{time.strftime('%H:%M:%S')}] {key}: {kw}", flush=True)
        self.save()

    def note(self, text):
        self.data["log"].append(text)
        print(text, flush=True)
        self.save()

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


# ---- environment and floors ----------------------------------------------------------------

def environment(rec: Recorder):
    import diffusers
    import torch
    import transformers

    props = torch.cuda.get_device_properties(0)
    rec.env(device=torch.cuda.get_device_name(0), memory_gib=round(props.total_memory / 2**30, 1),
            torch=torch.__version__, cuda=torch.version.cuda, diffusers=diffusers.__version__,
            transformers=transformers.__version__, python=platform.python_version(),
            command=" ".join([Path(sys.executable).name] + sys.argv))
    # The arithmetic ceiling: a large fp16 matrix product (fresh random data, median of 10).
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    rec.env(gemm_tflops=round(2 * 8192**3 / statistics.median(times) / 1e12, 1))
    del a, b


def unet_flops(pipe, width, height, batch, sdxl):
    """FLOPs of one UNet call with CFG (batch 2x), counted by torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    lat = torch.randn(2 * batch, 4, height // 8, width // 8, device="cuda", dtype=torch.float16)
    ctx = torch.randn(2 * batch, 77, unet.config.cross_attention_dim, device="cuda", dtype=torch.float16)
    kw = {}
    if sdxl:
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(2 * batch, 1280, device="cuda", dtype=torch.float16),
                                   "time_ids": torch.randn(2 * batch, 6, device="cuda", dtype=torch.float16)}
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        unet(lat, torch.tensor(500, device="cuda"), encoder_hidden_states=ctx, **kw)
    return fc.get_total_flops()


def vae_flops(pipe, width, height, batch=1):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    lat = torch.randn(batch, 4, height // 8, width // 8, device="cuda", dtype=torch.float16)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        pipe.vae.decode(lat)
    return fc.get_total_flops()


# ---- building random-weight models ---------------------------------------------------------

def build_pipeline(family: str):
    """A full-size pipeline from the shipped config, random fp16 weights, on the GPU."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from webui.models.checkpoint_configs import CONFIGS_DIR
    from webui.models.checkpoints import tokenizers_for

    cfg = CONFIGS_DIR / family
    js = lambda p: json.loads((cfg / p).read_text())  # noqa: E731
    torch.manual_seed(0)
    with torch.device("cuda"):
        unet = diffusers.UNet2DConditionModel.from_config(js("unet/config.json")).half()
        vae = diffusers.AutoencoderKL.from_config(js("vae/config.json")).half()
        te = CLIPTextModel(CLIPTextConfig(**js("text_encoder/config.json"))).half()
        parts = dict(unet=unet, vae=vae, text_encoder=te, **tokenizers_for(family))
        if family == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig(**js("text_encoder_2/config.json"))).half()
    sched_cls = getattr(diffusers, js("model_index.json")["scheduler"][1])
    parts["scheduler"] = sched_cls.from_config(js("scheduler/scheduler_config.json"))
    if family == "sdxl":
        pipe = diffusers.StableDiffusionXLPipeline(**parts)
    else:
        pipe = diffusers.StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                                 requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_random_lora(pipe, folder: Path) -> None:
    """A small random rank-8 LoRA on the UNet's attention and the text encoder, saved as
    folder/bench.safetensors (diffusers layout), for the fast-mode LoRA measure."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    layers = {}
    for part, targets in (("unet", ["to_q", "to_k", "to_v", "to_out.0"]),
                          ("text_encoder", ["q_proj", "k_proj", "v_proj", "out_proj"])):
        module = getattr(pipe, part)
        module.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights=False, target_modules=targets))
        with torch.no_grad():
            for name, p in module.named_parameters():
                if "lora_B" in name:
                    p.mul_(0.05)  # a visible change, not a blow-up
        layers[f"{part}_lora_layers"] = get_peft_model_state_dict(module)
    folder.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(folder, weight_name="bench.safetensors", **layers)


def dpmpp_2m_karras(pipe):
    import diffusers

    return diffusers.DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2,
        timestep_spacing="leading")


def timed(fn, runs, warmup):
    import torch

    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def stats(times):
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "runs": len(times)}


# ---- the app's path ------------------------------------------------------------------------

def make_service(models_dir: Path, **settings):
    from webui.serving.service import Service
    from webui.settings import Settings

    s = Settings(models_dir=models_dir, outputs_dir=models_dir.parent / "outputs", device="cuda", dtype="fp16",
                 offload=settings.pop("offload", "none"), **settings)
    return Service.create(s, load_model=False)


def app_request(svc, model, width, height, steps, **kw):
    fields = dict(prompt=PROMPT, negative_prompt=NEGATIVE, seed=kw.pop("seed", 1234), steps=steps, width=width,
                  height=height, sampler_name="DPM++ 2M", scheduler="Karras", cfg_scale=7,
                  sd_model_checkpoint=model, save_images=False)
    fields.update(kw)
    return svc.request(fields)


def timed_switches(svc, names) -> list[float]:
    """Seconds for each manager.select(name), the GPU idle before and after each."""
    import torch

    times = []
    for name in names:
        torch.cuda.synchronize()
        t = time.perf_counter()
        svc.manager.select(name)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def run_app(svc, req):
    return svc.generate(req, owner="bench")


# ---- parts ---------------------------------------------------------------------------------

def part_model(rec: Recorder, family: str, scratch: Path, quick: bool, fast_only: bool = False):
    import torch

    sdxl = family == "sdxl"
    W = H = 1024 if sdxl else 512
    steps = 30 if sdxl else 20
    runs = 3 if sdxl else 11
    models = scratch / "models"
    ckpts = models / "Stable-diffusion"
    name_a, name_b = f"{family}-a", f"{family}-b"

    t = time.perf_counter()
    pipe = build_pipeline(family)
    rec.note(f"built {family} in {time.perf_counter() - t:.1f}s")
    peak = rec.data["env"]["gemm_tflops"] * 1e12
    flops = unet_flops(pipe, W, H, 1, sdxl)
    vflops = vae_flops(pipe, W, H)
    total = flops * steps + vflops
    rec.put(f"{family}_flops", unet_call_tflop=round(flops / 1e12, 3), vae_decode_tflop=round(vflops / 1e12, 3),
            job_tflop=round(total / 1e12, 2), floor_s=round(total / peak, 4))
    floor = total / peak

    # 1. plain diffusers, eager, end to end (prompt -> PIL), DPM++ 2M Karras.
    pipe.scheduler = dpmpp_2m_karras(pipe)
    g = lambda: torch.Generator("cuda").manual_seed(1234)  # noqa: E731
    eager = timed(lambda: pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7,
                               width=W, height=H, generator=g()).images, runs, 2)
    rec.put(f"{family}_diffusers_eager", **stats(eager), floor_s=round(floor, 4))
    # batch 8 one call, plain diffusers (context for the batching measure)
    if not sdxl:
        b8 = timed(lambda: pipe([PROMPT] * 8, negative_prompt=[NEGATIVE] * 8, num_inference_steps=steps,
                                guidance_scale=7, width=W, height=H, generator=g()).images, 2, 1)
        rec.put(f"{family}_diffusers_eager_batch8", **stats(b8), images_per_s=round(8 / statistics.median(b8), 2),
                floor_s=round(8 * floor, 4))

    # Save as two diffusers folders (random weights; scratch only, never kept).
    t = time.perf_counter()
    pipe.save_pretrained(ckpts / name_a)
    shutil.copytree(ckpts / name_a, ckpts / name_b)
    if not sdxl:
        save_random_lora(pipe, models / "Lora")
    rec.note(f"saved {family} folders in {time.perf_counter() - t:.1f}s")
    del pipe
    torch.cuda.empty_cache()

    if not fast_only:  # --fast-only: the compiled path and its eager baseline alone
        # 2. our default mode (no compile) through Service.generate.
        svc = make_service(models, device_cache=2, cpu_cache=1)
        req = app_request(svc, name_a, W, H, steps)
        run_app(svc, req)  # load
        t_default = timed(lambda: run_app(svc, req), runs, 1)
        r = run_app(svc, req)
        rec.put(f"{family}_app_default", **stats(t_default), ratio_vs_eager=round(
            statistics.median(t_default) / statistics.median(eager), 3), floor_s=round(floor, 4),
                stage_s={k: round(v, 4) for k, v in r.timings.items()}, peak_gib=r.memory, warnings=r.warnings)

        # 3. checkpoint switches: GPU-resident (device_cache=2), then pinned RAM (device_cache=1).
        svc.manager.select(name_b)
        svc.manager.select(name_a)
        sw = timed_switches(svc, [name_b, name_a] * 2)
        rec.put(f"{family}_switch_gpu_resident", **stats(sw))
        svc.close()
        svc = make_service(models, device_cache=1, cpu_cache=1)
        for name in (name_a, name_b, name_a, name_b):  # both have pinned buffers now; b active
            svc.manager.select(name)
        weights_gb = sum(p.numel() * p.element_size() for m in (svc.manager.active.pipe.unet, svc.manager.active.pipe.vae,
                                                                svc.manager.active.pipe.text_encoder)
                         for p in m.parameters()) / 1e9
        sw = timed_switches(svc, [name_a, name_b] * 3)
        rec.put(f"{family}_switch_pinned_ram", **stats(sw), weights_gb=round(weights_gb, 2),
                note="one model out to pinned RAM and one in, both copies")
        svc.close()

        # 4. low-memory modes: peak allocated VRAM for one image.
        for mode, lm_steps in (("model", steps), ("sequential", 2)):
            svc = make_service(models, offload=mode, vae_tiling=True)
            lreq = app_request(svc, name_a, W, H, lm_steps)
            run_app(svc, lreq)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            r = run_app(svc, lreq)
            torch.cuda.synchronize()
            # The engine restarts the peak count at each stage (MiB): the job's peak is the stages' max.
            rec.put(f"{family}_lowmem_{mode}", time_s=round(time.perf_counter() - t, 3), steps=lm_steps,
                    peak_allocated_gib=round(max(r.memory.values()) / 1024, 2),
                    allocated_before_gib=round(base / 2**30, 2), stage_peak_gib=r.memory)
            svc.close()
            del svc, r

    # 5. fast mode (compiled). Cold compile = first call; then the timed runs.
    cache = scratch / "compile-cache"
    svc = make_service(models, fast=True, compile_cache_dir=cache, device_cache=1, cpu_cache=0)
    req = app_request(svc, name_a, W, H, steps)
    rec.note("fast mode: first call, compiling")
    t = time.perf_counter()
    run_app(svc, req)
    rec.put(f"{family}_fast_first_call_cold", time_s=round(time.perf_counter() - t, 1))
    t_fast = timed(lambda: run_app(svc, req), runs, 2)
    r = run_app(svc, req)
    eager_med = statistics.median(eager)
    rec.put(f"{family}_app_fast", **stats(t_fast), speedup_vs_eager=round(eager_med / statistics.median(t_fast), 2),
            floor_s=round(floor, 4), stage_s={k: round(v, 4) for k, v in r.timings.items()}, peak_gib=r.memory,
            warnings=r.warnings, note="same prompt each run: embeddings from the prompt cache")
    # Live previews (every `preview_every` steps, on by default) against none: the preview is
    # read back without stalling the generating thread, so this should be close to zero.
    every = svc.manager.settings.preview_every
    svc.manager.settings = dataclasses.replace(svc.manager.settings, preview_every=0)
    t_nopreview = timed(lambda: run_app(svc, req), runs, 1)
    svc.manager.settings = dataclasses.replace(svc.manager.settings, preview_every=every)
    rec.put(f"{family}_app_fast_no_previews", **stats(t_nopreview), preview_every_default=every)
    counter = iter(range(10**6))
    t_new = timed(lambda: run_app(svc, app_request(svc, name_a, W, H, steps, prompt=f"{PROMPT}, take {next(counter)}")),
                  runs, 1)
    rec.put(f"{family}_app_fast_new_prompt", **stats(t_new),
            speedup_vs_eager=round(eager_med / statistics.median(t_new), 2), floor_s=round(floor, 4),
            note="a new prompt every run: text encoders run each time")
    # Same pixels as eager within fp16 tolerance: compare with the default-mode image, for the
    # prompt with (emphasis:1.2) and for the same words without it. With random weights CLIP's
    # final layer norm leaves a hidden-state mean of ~0, and A1111's emphasis rescales by
    # mean_before / mean_after: that ratio blows fp16 rounding differences of the compiled text
    # encoder (1e-2) up to whole units; trained weights are expected to keep the mean off 0.
    flat = dict(prompt=PROMPT.replace("(", "").replace(":1.2)", ""), negative_prompt=NEGATIVE.replace("(", "").replace(":1.3)", ""))
    r_flat = run_app(svc, app_request(svc, name_a, W, H, steps, **flat))
    plain = make_service(models, device_cache=1, cpu_cache=0)
    import numpy as np

    def diff(x, y):
        a, b = np.asarray(x.images[0], dtype=np.int16), np.asarray(y.images[0], dtype=np.int16)
        return {"max_abs": int(np.abs(a - b).max()), "mean_abs": round(float(np.abs(a - b).mean()), 3)}
    rec.put(f"{family}_fast_vs_default_pixels", **diff(r, run_app(plain, req)),
            no_emphasis=diff(r_flat, run_app(plain, app_request(plain, name_a, W, H, steps, **flat))))
    plain.close()
    del plain
    # Changing seed / sampler / prompt must not recompile: time them against the compiled run.
    for label, change in (("seed+prompt", dict(seed=99, prompt="a woman, watercolour")),
                          ("sampler Euler a", dict(sampler_name="Euler a", scheduler="Automatic"))):
        rq = app_request(svc, name_a, W, H, steps, **change)
        t = time.perf_counter()
        run_app(svc, rq)
        rec.put(f"{family}_fast_change_{label.split()[0]}", time_s=round(time.perf_counter() - t, 3))

    if not sdxl:
        # 6. 8 concurrent compatible requests (different users, prompts, seeds): one by one
        # (batching off) vs through the batching queue, fast mode.
        # Every run brings 8 prompts never seen before, so neither way gets the prompt cache.
        runs = iter(range(10**6))

        def new_requests():
            k = next(runs)
            return [app_request(svc, name_a, W, H, steps, seed=100 + i, prompt=f"{PROMPT}, person {i}, take {k}")
                    for i in range(8)]

        def run_one_by_one():
            for rq in new_requests():
                run_app(svc, rq)
        one_by_one = statistics.median(timed(run_one_by_one, 3, 0))

        def concurrent():
            threads, results = [], [None] * 8
            with svc.queue.hold():  # all 8 are waiting when the GPU frees up
                for i, rq in enumerate(new_requests()):
                    def work(i=i, rq=rq):
                        results[i] = svc.generate(rq, owner=f"user{i}")
                    th = threading.Thread(target=work)
                    th.start()
                    threads.append(th)
                while svc.queue.pending() < 8:
                    time.sleep(0.001)
            for th in threads:
                th.join()
            return results
        rec.note("batch of 8: first call, compiling")
        t = time.perf_counter()
        concurrent()  # compiles the batch-8 bucket
        rec.put("sd15_batch8_first_call", time_s=round(time.perf_counter() - t, 1))
        batched = timed(concurrent, 3, 0)
        stages = concurrent()[0].timings
        rec.put("sd15_concurrent8", one_by_one_s=round(one_by_one, 3), batched_median_s=round(statistics.median(batched), 3),
                images_per_s_one_by_one=round(8 / one_by_one, 2),
                images_per_s_batched=round(8 / statistics.median(batched), 2),
                gain=round(one_by_one / statistics.median(batched), 2), floor_s=round(8 * floor, 4),
                batched_stage_s={k: round(v, 4) for k, v in stages.items()})
    if not sdxl:
        # 7. LoRA in fast mode (last: the first LoRA unfuses q/k/v for good). Its first use
        # compiles once; new weights are tensor values and must not recompile; pixels must
        # match default mode at the same weight (prompt without emphasis, see above).
        lora_times = {}
        for weight in (0.6, 0.9, 0.3):
            rq = app_request(svc, name_a, W, H, steps, prompt=f"{flat['prompt']} <lora:bench:{weight}>",
                             negative_prompt=flat["negative_prompt"])
            t = time.perf_counter()
            r_lora = run_app(svc, rq)
            lora_times[weight] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        run_app(svc, req)
        lora_off = round(time.perf_counter() - t, 3)
        plain = make_service(models, device_cache=1, cpu_cache=0)
        rec.put(f"{family}_fast_lora", time_s_by_weight=lora_times, first_request_without_lora_after_s=lora_off,
                fast_vs_default_pixels_at_0_3=diff(r_lora, run_app(plain, rq)),
                note="weights 0.6 (first use, compiles), 0.9 and 0.3 (must not recompile)")
        plain.close()
    svc.close()

    # 8. warm start: a fresh process compiles the same shapes from the persistent cache.
    if (sdxl and quick) or fast_only:
        return
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--warm-start", family, "--scratch", str(scratch)],
                          capture_output=True, text=True, timeout=400)
    line = [x for x in proc.stdout.splitlines() if x.startswith("WARM ")]
    rec.put(f"{family}_fast_first_call_warm_cache", time_s=float(line[-1].split()[1]) if line else None,
            process_s=round(time.perf_counter() - t, 1), rc=proc.returncode, err=proc.stderr[-800:] if not line else "")


def warm_start(family: str, scratch: Path):
    sdxl = family == "sdxl"
    W = H = 1024 if sdxl else 512
    svc = make_service(scratch / "models", fast=True, compile_cache_dir=scratch / "compile-cache",
                       device_cache=1, cpu_cache=0)
    req = app_request(svc, f"{family}-a", W, H, 30 if sdxl else 20)
    svc.manager.select(f"{family}-a")
    t = time.perf_counter()
    run_app(svc, req)
    print(f"WARM {time.perf_counter() - t:.2f}", flush=True)


def part_api(rec: Recorder, scratch: Path, runs: int = 15, size: int = 512):
    """Extra time of a request through the Gradio API (gradio_client -> queue -> handler ->
    PNG files -> download) over a direct Service.generate call with the same request, both
    saving their PNGs. Any device: the model is the tiny demo one, so the difference is the
    web layer, not the GPU."""
    import tempfile

    from gradio_client import Client

    from webui.serving.service import Service
    from webui.settings import Settings
    from webui.ui import build_ui, launch_kwargs

    scratch.mkdir(parents=True, exist_ok=True)
    settings = Settings(models_dir=scratch / "models", outputs_dir=scratch / "outputs", demo=True, port=7961)
    svc = Service.create(settings)
    demo = build_ui(svc)
    demo.queue(default_concurrency_limit=1)  # as app.py runs it, REST API included
    _, url, _ = demo.launch(**{**launch_kwargs(svc), "prevent_thread_lock": True, "quiet": True})
    client = Client(url, verbose=False, download_files=tempfile.mkdtemp())
    args = dict(prompt="portrait", negative_prompt="", steps=2, cfg_scale=7, seed=1, width=size, height=size,
                sampler_name="Euler", scheduler="Automatic", batch_size=1, n_iter=1)
    req = svc.request({k: v for k, v in args.items()})
    # Time spent inside Service.generate for each API request, measured in the server: the
    # request's extra is its round trip minus that, so the generation's own spread (large on a
    # busy CPU) does not enter the difference.
    inner: list[float] = []
    generate = svc.generate

    def timed_generate(*a, **kw):
        t0 = time.perf_counter()
        try:
            return generate(*a, **kw)
        finally:
            inner.append(time.perf_counter() - t0)

    svc.generate = timed_generate
    import httpx

    http = httpx.Client(timeout=120)
    params = http.get(f"{url}gradio_api/info").json()["named_endpoints"]["/txt2img"]["parameters"]
    data = [args.get(p["parameter_name"], p.get("parameter_default")) for p in params]

    def via_client():
        client.predict(**args, api_name="/txt2img")

    def via_http():
        # Gradio's documented HTTP route (what curl and the JS client use): join, read the
        # event stream to "complete", then fetch the first picture.
        event = http.post(f"{url}gradio_api/call/txt2img", json={"data": data}).json()["event_id"]
        out = None
        with http.stream("GET", f"{url}gradio_api/call/txt2img/{event}") as r:
            kind = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind == "complete":
                    out = json.loads(line[5:])
                    break
        http.get(out[0][0]["image"]["url"]).raise_for_status()

    def via_rest():
        r = http.post(f"{url}sdapi/v1/txt2img", json={**args, "save_images": True})
        r.raise_for_status()
        assert r.json()["images"]

    routes = {"gradio_client": via_client, "http": via_http, "rest": via_rest}
    for _ in range(3):
        for fn in routes.values():
            fn()
    rounds: dict[str, list] = {k: [] for k in routes}
    extra: dict[str, list] = {k: [] for k in routes}
    direct = []
    for _ in range(runs):  # interleaved, so machine load hits every route alike
        for name, fn in routes.items():
            inner.clear()
            t = time.perf_counter()
            fn()
            rounds[name].append(time.perf_counter() - t)
            extra[name].append(rounds[name][-1] - inner[0])
        t = time.perf_counter()
        generate(req)
        direct.append(time.perf_counter() - t)
    # What "plus PNG encoding" allows: one PNG of this size, with its metadata, encoded once.
    import io

    image = generate(req).images[0]
    encode = []
    for _ in range(5):
        t = time.perf_counter()
        image.save(io.BytesIO(), format="PNG")
        encode.append(time.perf_counter() - t)
    rec.put("api_vs_direct", direct=stats(direct), png_encode_ms=round(1000 * statistics.median(encode), 1), **{f"{k}_round_trip": stats(v) for k, v in rounds.items()},
            **{f"{k}_extra_ms": round(1000 * statistics.median(v), 1) for k, v in extra.items()},
            **{f"{k}_extra_min_ms": round(1000 * min(v), 1) for k, v in extra.items()},
            png_kib=round(sum(p.stat().st_size for p in (scratch / "outputs").rglob("*.png")) / 1024
                          / (4 * runs + 9)),
            note=f"tiny demo model, {size}x{size}, 2 steps; every route saves a PNG and returns it; extra = "
                 "round trip minus the server's own Service.generate time for that request")
    demo.close()
    svc.close()


# ---- report --------------------------------------------------------------------------------

def report(paths: list[Path]) -> str:
    data = {}
    env = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        data.update(d["measures"])
        env = env or d["env"]
    return json.dumps({"env": env, "measures": data}, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["sd15", "sdxl", "api"])
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--scratch", default="/tmp/sd-bench")
    ap.add_argument("--quick", action="store_true", help="skip the slow sequential-offload run")
    ap.add_argument("--fast-only", action="store_true", help="only plain eager and the compiled path")
    ap.add_argument("--warm-start")
    ap.add_argument("--report", nargs="*")
    a = ap.parse_args()
    if a.report:
        print(report(a.report))
        return
    if a.warm_start:
        warm_start(a.warm_start, Path(a.scratch))
        return
    rec = Recorder(Path(a.out) / f"{a.part}.json", a.part)
    if a.part == "api":
        import gradio
        import torch

        rec.env(gradio=gradio.__version__, torch=torch.__version__, device="cpu (tiny demo model)",
                command=" ".join([Path(sys.executable).name] + sys.argv))
        part_api(rec, Path(a.scratch) / "api", runs=10)
        return
    environment(rec)
    family = {"sd15": "sd1", "sdxl": "sdxl"}[a.part]
    scratch = Path(a.scratch) / a.part
    try:
        part_model(rec, family, scratch, a.quick, a.fast_only)
    except Exception as e:  # keep what was measured; say what broke
        import traceback
        rec.note("FAILED: " + "".join(traceback.format_exception(e))[-3000:])
        raise


if __name__ == "__main__":
    main()
