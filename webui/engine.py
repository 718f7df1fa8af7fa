"""The pipeline manager: the only code that touches the GPU.

One manager per process, pinned to one device. It keeps an LRU of loaded checkpoints (some on
the device, more in pinned CPU memory), and runs every request -- txt2img, img2img, inpaint --
through one method. Per-request things (scheduler, generators, interrupt flags) live in the
request's own pipeline object and Job, never on the shared weights.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from . import __version__
from .catalog import Catalog, Checkpoint
from .checkpoints import detect_family, load_pipeline, read_shapes
from .errors import UserError
from . import fast
from .infotext import build_infotext
from .jobs import Job
from .memory import stage_peak
from .prompt_encoder import encode_prompts
from .request import GenerationRequest
from .samplers import SchedulerFactory
from .settings import Settings
from . import detailer, hires, tasks

log = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device {name!r} is not a device torch knows (try cuda, cuda:1, mps, cpu)") from None


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # Half precision is the speed path on GPUs; CPUs are faster and exact in fp32.
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return DTYPES[name]


def _modules(pipe):
    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]


def _own_memory(pipe) -> None:
    """Copy weights out of the memory-mapped file: a checkpoint replaced on disk while mapped
    can crash the process (SIGBUS), and mapped tensors round differently in some CPU kernels."""
    for module in _modules(pipe):
        for t in list(module.parameters()) + list(module.buffers()):
            t.data = t.data.clone(memory_format=torch.contiguous_format)


@dataclass
class LoadedModel:
    ckpt: Checkpoint
    pipe: object
    family: str
    model_hash: str | None
    on_device: bool = True
    pinned: list = field(default_factory=list, repr=False)  # reusable pinned CPU copies of the weights

    @property
    def is_sdxl(self) -> bool:
        return self.family.startswith("sdxl")

    @property
    def is_inpaint(self) -> bool:
        return self.family.endswith("-inpaint")


@dataclass
class GenerationResult:
    request: GenerationRequest
    images: list[Image.Image]
    seeds: list[int]
    infotexts: list[str]
    model_name: str
    model_hash: str | None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # Peak memory per stage in MiB ("base", "hires", "face detail"; see memory.py).
    memory: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    paths: list[Path] = field(default_factory=list)


class PipelineManager:
    def __init__(self, settings: Settings, catalog: Catalog | None = None):
        self.settings = settings
        self.catalog = catalog or Catalog(settings.models_dir)
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.schedulers = SchedulerFactory()
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # LRU: last = most recent
        self._encoded: OrderedDict[tuple, object] = OrderedDict()  # prompt embeddings, LRU
        self._active: str | None = None
        # One lock = one path to the GPU. Requests queue here (the UI queue also limits to one).
        self._gpu = threading.RLock()
        # Test hook (fault injection): an exception raised by the next UNet call.
        self.fail_next_unet_call: BaseException | None = None
        # Low-memory mode: weights live in CPU memory and visit the GPU (fast.py).
        self.offload = fast.choose_offload(settings.offload, self.device)
        if self.offload != "none":
            log.info("low-memory mode: %s CPU offload, tiled VAE", self.offload)
        # Fast mode compiles the UNet: with inductor on CUDA; tests pass a counting backend.
        self.compile_backend: object = "inductor"
        if settings.fast and self.device.type == "cuda":
            fast.setup_compile_cache(settings.compile_cache_dir or settings.models_dir / ".compile-cache")

    @property
    def compiling(self) -> bool:
        return self.settings.fast and self.offload == "none" and (
            self.device.type == "cuda" or self.compile_backend != "inductor")

    # ---- checkpoints -------------------------------------------------------------------------

    @property
    def active(self) -> LoadedModel | None:
        return self._models.get(self._active) if self._active else None

    def loaded_names(self) -> list[str]:
        return list(self._models)

    def select(self, name: str) -> LoadedModel:
        """Make `name` the active checkpoint (loading it if needed). A failed load raises
        UserError and leaves the previous model active and usable."""
        ckpt = self.catalog.find(name)
        with self._gpu:
            model = self._checkout(ckpt)
            self._active = ckpt.name
            return model

    def _checkout(self, ckpt: Checkpoint) -> LoadedModel:
        model = self._models.get(ckpt.name)
        if model is not None:
            self._models.move_to_end(ckpt.name)
            if not model.on_device and self.offload == "none":
                self._make_room_on_device(keep=ckpt.name)
                self._move(model, to_device=True)
            return model
        if ckpt.kind == "file":
            # Cheap header check first: a bad file must not evict anything.
            detect_family(read_shapes(ckpt.filename))
        self._make_room_on_device(keep=None)
        t0 = time.perf_counter()
        try:
            pipe, family = load_pipeline(ckpt.filename, torch_dtype=self.dtype)
        except UserError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise UserError(f"could not load checkpoint {ckpt.file_label}: {e}", field="sd_model_checkpoint") from e
        pipe.set_progress_bar_config(disable=True)
        if self.device.type == "cpu":
            _own_memory(pipe)
        elif self.offload != "none":
            fast.apply_offload(pipe, self.offload, self.device, self.settings.vae_tiling)
        else:
            pipe.to(self.device)
        if self.settings.vae_tiling:
            pipe.vae.enable_tiling()
        if self.settings.fast:
            applied = fast.optimize_pipeline(
                pipe, device=self.device, backend=self.compile_backend,
                compile_mode=self.settings.compile_mode if self.compiling else None)
            log.info("fast mode for %s: %s", ckpt.name, ", ".join(applied))
        model = LoadedModel(ckpt, pipe, family, self.catalog.short_hash(ckpt), on_device=self.offload == "none")
        self._models[ckpt.name] = model
        log.info("loaded %s (%s) in %.1fs", ckpt.file_label, family, time.perf_counter() - t0)
        self._trim()
        return model

    def _make_room_on_device(self, keep: str | None) -> None:
        if self.offload != "none":
            return  # offload hooks already keep weights in CPU memory
        on_device = [n for n, m in self._models.items() if m.on_device and n != keep]
        while len(on_device) >= self.settings.device_cache:
            self._move(self._models[on_device.pop(0)], to_device=False)

    def _trim(self) -> None:
        limit = self.settings.device_cache + self.settings.cpu_cache
        while len(self._models) > limit:
            victim = next(n for n in self._models if n != self._active or len(self._models) == 1)
            if victim == list(self._models)[-1]:
                break
            del self._models[victim]
            self._encoded.clear()  # keyed by pipeline id, which a new pipeline may reuse
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _move(self, model: LoadedModel, to_device: bool) -> None:
        if self.device.type != "cuda":
            model.pipe.to(self.device if to_device else "cpu")
            model.on_device = to_device
            return
        tensors = [t for m in _modules(model.pipe) for t in list(m.parameters()) + list(m.buffers())]
        if to_device:
            for t in tensors:
                t.data = t.data.to(self.device, non_blocking=True)
        else:
            # Pinned buffers, allocated on the first move out and reused after: both directions
            # are then plain DMA copies (pinning afresh each time costs more than the copy).
            if len(model.pinned) != len(tensors):
                model.pinned = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
            for t, buf in zip(tensors, model.pinned):
                buf.copy_(t.data, non_blocking=True)
                t.data = buf
        torch.cuda.synchronize(self.device)
        model.on_device = to_device

    def unload_all(self) -> None:
        """Drop every loaded checkpoint (and its device memory)."""
        with self._gpu:
            self._models.clear()
            self._encoded.clear()
            self._active = None
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def ensure_model(self, name: str | None) -> LoadedModel:
        if name:
            return self.select(name)
        if self.active is None:
            items = self.catalog.list()
            if not items:
                raise UserError("no checkpoint found: put a .safetensors file in "
                                f"{self.catalog.checkpoints_dir} or start with --model", field="sd_model_checkpoint")
            return self.select(items[0].name)
        return self.active

    # ---- generation --------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, job: Job | None = None) -> GenerationResult:
        """Run one request end to end. Thread-safe: requests take turns on the device."""
        job = job or Job()
        request = request.resolved_seed()
        with self._gpu:
            t0 = time.perf_counter()
            model = self.ensure_model(request.sd_model_checkpoint)
            timings = {"load": time.perf_counter() - t0}
            try:
                return self._generate(model, request, job, timings)
            finally:
                job.state = "done"
                if self.device.type == "cuda":
                    torch.cuda.empty_cache() if torch.cuda.memory_reserved() > 0.9 * torch.cuda.get_device_properties(
                        self.device).total_memory else None

    def upscale_image(self, image: Image.Image, upscaler: str, size: tuple[int, int]) -> Image.Image:
        """A pixel upscaler (Lanczos, Nearest, ESRGAN file) on one image, e.g. for the Extras tab;
        model upscalers run on the device, so they take their turn like generations."""
        with self._gpu:
            return hires.upscale_pixels([image], upscaler, size, size, self.settings.models_dir, str(self.device))[0]

    def detail_faces(self, request: GenerationRequest, job: Job | None = None) -> GenerationResult:
        """The face detail pass alone, on request.init_image at its own size (the Extras tab)."""
        job = job or Job()
        request = request.resolved_seed()
        with self._gpu:
            model = self.ensure_model(request.sd_model_checkpoint)
            warnings: list[str] = []
            timings: dict[str, float] = {}
            memory: dict[str, float] = {}
            try:
                with stage_peak(self.device, memory, "face detail"):
                    image, params = detailer.engine_pass(self, model, request, request.init_image.convert("RGB"),
                                                         request.seed, job, warnings, timings)
            finally:
                job.state = "done"
            shown = request.replace(task="txt2img", enable_hr=False, width=image.width, height=image.height)
            info = self.infotext(shown, model, request.seed, params)
            return GenerationResult(request, [image], [request.seed], [info], model.ckpt.name, model.model_hash,
                                    warnings, timings, memory=memory, interrupted=job.interrupted)

    def generate_many(self, items: list[tuple[GenerationRequest, Job]]) -> list:
        """Run several compatible requests (see gpu_queue.batch_key) as one UNet batch.

        Returns one GenerationResult or exception per item, in order. Each request keeps its own
        prompts, seeds (noise comes from a CPU generator per image, so it does not depend on the
        batch), progress and interrupt; requests whose prompts encode to a different number of
        75-token chunks run as separate batches, since padding a prompt with empty chunks would
        change its picture.
        """
        if len(items) == 1:
            req, job = items[0]
            try:
                return [self.generate(req, job)]
            except Exception as exc:  # noqa: BLE001 -- reported to that request's caller
                return [exc]
        outcomes: list = [None] * len(items)
        reqs = [r.resolved_seed() for r, _ in items]
        jobs = [j for _, j in items]
        with self._gpu:
            try:
                t0 = time.perf_counter()
                model = self.ensure_model(reqs[0].sd_model_checkpoint)
                load = time.perf_counter() - t0
                groups: dict[tuple, list[int]] = {}
                encoded = {}
                for i, req in enumerate(reqs):
                    try:
                        encoded[i] = self._encode(model, req.clip_skip, [req.prompt] * req.batch_size,
                                                  [req.negative_prompt] * req.batch_size)
                    except Exception as exc:  # noqa: BLE001 -- e.g. a clip skip this model lacks
                        outcomes[i] = exc
                        continue
                    groups.setdefault(tuple(encoded[i][0].prompt_embeds.shape[1:]), []).append(i)
                for members in groups.values():
                    try:
                        results = self._run_batch(model, [reqs[i] for i in members], [jobs[i] for i in members],
                                                  [encoded[i] for i in members], load)
                    except Exception as exc:  # noqa: BLE001
                        results = [exc] * len(members)
                    for i, r in zip(members, results):
                        outcomes[i] = r
            except Exception as exc:  # noqa: BLE001 -- no model: every request gets the error
                outcomes = [o if o is not None else exc for o in outcomes]
            finally:
                for j in jobs:
                    j.state = "done"
        return outcomes

    def _encode(self, model: LoadedModel, clip_skip: int, prompts: list[str], negatives: list[str]):
        """Prompt embeddings, remembered for the last few prompts: artists re-run one prompt with
        new seeds, and the text encoders then cost nothing (the tensors are never modified)."""
        pipe = model.pipe
        t = time.perf_counter()
        key = (id(pipe), tuple(prompts), tuple(negatives), clip_skip)
        enc = self._encoded.get(key)
        if enc is None:
            enc = encode_prompts(
                [pipe.tokenizer] + ([pipe.tokenizer_2] if model.is_sdxl else []),
                [pipe.text_encoder] + ([pipe.text_encoder_2] if model.is_sdxl else []),
                prompts, negatives, clip_skip=clip_skip, sdxl=model.is_sdxl,
            )
            self._encoded[key] = enc
            while len(self._encoded) > 8:
                self._encoded.popitem(last=False)
        else:
            self._encoded.move_to_end(key)
        return enc, time.perf_counter() - t

    def _run_batch(self, model, reqs, jobs, encoded, load: float) -> list[GenerationResult]:
        """One denoising loop and one VAE decode over several txt2img requests."""
        first = reqs[0]
        prepared = tasks.prepare(first, model)
        scheduler, notes = self.schedulers.build(model.pipe.scheduler.config, first.sampler_name, first.scheduler)
        pipe = tasks.task_pipeline(model, prepared, scheduler)
        rows, start = [], 0  # each request's slice of the batch
        for r in reqs:
            rows.append(slice(start, start + r.batch_size))
            start += r.batch_size
        seeds = [s for r in reqs for s in r.seeds()[: r.batch_size]]
        encoded = list(encoded)
        if self.compiling:
            # Pad to a batch bucket so merged batches hit a few compiled shapes; the padding
            # rows repeat the last request and are dropped (rows never mix in the UNet).
            extra = fast.batch_bucket(len(seeds)) - len(seeds)
            if extra:
                last = encoded[-1][0]
                pad = {k: getattr(last, k)[:1].expand(extra, *getattr(last, k).shape[1:])
                       for k in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                                 "negative_pooled_prompt_embeds") if getattr(last, k) is not None}
                encoded.append((dataclasses.replace(last, **pad), 0.0))
                seeds += [0] * extra
        for j in jobs:
            j.start_batch(0, 1)
        dtype = model.pipe.unet.dtype

        def cat(attr):
            return torch.cat([getattr(e, attr) for e, _ in encoded]).to(self.device, dtype)

        frozen: dict[int, torch.Tensor] = {}  # job index -> its latents when it was stopped
        memory: dict[str, float] = {}
        warnings: list[str] = []
        with stage_peak(self.device, memory, "base"):
            t = time.perf_counter()
            latents = pipe(
                **tasks.pipeline_inputs(first, prepared, model),
                prompt_embeds=cat("prompt_embeds"),
                negative_prompt_embeds=cat("negative_prompt_embeds"),
                **({"pooled_prompt_embeds": cat("pooled_prompt_embeds"),
                    "negative_pooled_prompt_embeds": cat("negative_pooled_prompt_embeds")} if model.is_sdxl else {}),
                num_inference_steps=first.steps,
                guidance_scale=first.cfg_scale,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                output_type="latent",
                callback_on_step_end=self._batch_step_callback(jobs, rows, frozen),
            ).images
            self._sync()
            denoise = time.perf_counter() - t
            if not self.compiling:
                latents = latents[:start]  # padding only exists for the compiled shapes
            for k, lat in frozen.items():
                latents[rows[k]] = lat
            t = time.perf_counter()
            # Compiled: the VAE decodes the padded batch too, so it also sees bucketed shapes only.
            decoded = self.decode(model, latents, warnings)[:start]
            self._sync()
            decode = time.perf_counter() - t
        results = []
        for k, (req, job, (enc, enc_t)) in enumerate(zip(reqs, jobs, encoded)):
            req_seeds = req.seeds()[: req.batch_size]
            images = [tasks.finish(img, prepared) for img in decoded[rows[k]]]
            w = [n for n in notes] + [x for x in enc.warnings if x not in notes] + warnings
            timings = {"load": load, "encode": enc_t, "denoise": denoise, "decode": decode}
            timings["total"] = sum(timings.values())
            timings["batched_with"] = float(len(reqs) - 1)
            results.append(GenerationResult(req, images, req_seeds, [self.infotext(req, model, s) for s in req_seeds],
                                            model.ckpt.name, model.model_hash, w, timings,
                                            interrupted=job.interrupted, memory=dict(memory)))
        return results

    def _batch_step_callback(self, jobs: list[Job], rows: list[slice], frozen: dict):
        def on_step(pipe, i, t, kwargs):
            if self.fail_next_unet_call is not None:
                err, self.fail_next_unet_call = self.fail_next_unet_call, None
                raise err
            for k, job in enumerate(jobs):
                if k in frozen:
                    continue
                job.step = i + 1
                job.total_steps = getattr(pipe, "_num_timesteps", None) or job.total_steps
                if job.stop_requested:
                    # Stopping one user's job must not stop the others sharing the batch: keep
                    # its latents as they are now (what a run of its own would decode).
                    frozen[k] = kwargs["latents"][rows[k]].clone()
                job.notify()
            if len(frozen) == len(jobs):
                pipe._interrupt = True
            return {}
        return on_step

    def _generate(self, model: LoadedModel, req: GenerationRequest, job: Job, timings: dict,
                  measure: bool = True) -> GenerationResult:
        seeds = req.seeds()
        # Peak memory per stage; off inside a face pass, whose own stage is being measured.
        memory: dict[str, float] | None = {} if measure else None
        warnings: list[str] = []
        images: list[Image.Image] = []
        infotexts: list[str] = []
        done_seeds: list[int] = []
        prepared = tasks.prepare(req, model)  # resized init image, masks, crop region...
        scheduler_cfg = model.pipe.scheduler.config
        for b in range(req.n_iter):
            if job.interrupted:
                break
            batch_seeds = seeds[b * req.batch_size:(b + 1) * req.batch_size]
            job.start_batch(b, req.n_iter)
            if tasks.skip_denoise(req):
                decoded = [prepared.image] * len(batch_seeds)
            else:
                scheduler, notes = self.schedulers.build(scheduler_cfg, req.sampler_name, req.scheduler)
                warnings += [n for n in notes if n not in warnings]
                pipe = tasks.task_pipeline(model, prepared, scheduler)
                t = time.perf_counter()
                embeds = self.embeds(model, pipe, req.prompt, req.negative_prompt, len(batch_seeds), req.clip_skip,
                                     warnings)
                timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - t
                generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
                t = time.perf_counter()
                with stage_peak(self.device, memory, "base"):
                    latents = pipe(
                        **tasks.pipeline_inputs(req, prepared, model),
                        **embeds,
                        num_inference_steps=req.steps,
                        guidance_scale=req.cfg_scale,
                        generator=generators if len(generators) > 1 else generators[0],
                        output_type="latent",
                        callback_on_step_end=self._step_callback(job),
                    ).images
                    self._sync()
                    timings["denoise"] = timings.get("denoise", 0.0) + time.perf_counter() - t
                    if not (hires.wanted(req) and not job.stop_requested):  # else the hires pass decodes
                        t = time.perf_counter()
                        decoded = self.decode(model, latents, warnings)
                        self._sync()
                        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t
                if hires.wanted(req) and not job.stop_requested:
                    with stage_peak(self.device, memory, "hires"):
                        decoded = hires.second_pass(self, model, req, latents, batch_seeds, embeds, job,
                                                    warnings, timings)
            for img, seed in zip(decoded, batch_seeds):
                img = tasks.finish(img, prepared)  # paste inpaint result back over the original
                extra = {}
                if req.face_detail and not job.interrupted:
                    with stage_peak(self.device, memory, "face detail"):
                        img, extra = detailer.engine_pass(self, model, req, img, seed, job, warnings, timings)
                images.append(img)
                done_seeds.append(seed)
                infotexts.append(self.infotext(req, model, seed, extra))
        timings["total"] = sum(v for k, v in timings.items())
        return GenerationResult(req, images, done_seeds, infotexts, model.ckpt.name, model.model_hash,
                                warnings, timings, memory=memory or {}, interrupted=job.interrupted)

    def embeds(self, model: LoadedModel, pipe, prompt: str, negative: str, count: int, clip_skip: int,
               warnings: list[str]) -> dict:
        """Prompt embeddings (A1111 syntax, long prompts) as pipeline keyword arguments."""
        enc, _took = self._encode(model, clip_skip, [prompt] * count, [negative] * count)
        warnings += [w for w in enc.warnings if w not in warnings]
        dev, dt = self.device, model.pipe.unet.dtype
        out = {"prompt_embeds": enc.prompt_embeds.to(dev, dt),
               "negative_prompt_embeds": enc.negative_prompt_embeds.to(dev, dt)}
        if model.is_sdxl:
            out["pooled_prompt_embeds"] = enc.pooled_prompt_embeds.to(dev, dt)
            out["negative_pooled_prompt_embeds"] = enc.negative_pooled_prompt_embeds.to(dev, dt)
        return out

    def _step_callback(self, job: Job):
        def on_step(pipe, i, t, kwargs):
            if self.fail_next_unet_call is not None:
                err, self.fail_next_unet_call = self.fail_next_unet_call, None
                raise err
            job.step = i + 1
            job.total_steps = getattr(pipe, "_num_timesteps", None) or job.total_steps
            if job.stop_requested:
                pipe._interrupt = True  # this request's own pipeline object: nobody else's
            job.notify()
            return {}
        return on_step

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def decode(self, model: LoadedModel, latents: torch.Tensor, warnings: list[str]) -> list[Image.Image]:
        vae = model.pipe.vae
        cfg = vae.config
        lat = latents / cfg.scaling_factor
        if getattr(cfg, "shift_factor", None):
            lat = lat + cfg.shift_factor
        pixels = lat.shape[0] * lat.shape[2] * lat.shape[3] * model.pipe.vae_scale_factor ** 2
        with hires.vae_tiling(vae, pixels):  # large decodes go tile by tile (memory)
            out = vae.decode(lat.to(vae.dtype), return_dict=False)[0]
            if vae.dtype != torch.float32 and self.offload == "none" and not torch.isfinite(out).all():
                # The fp16 VAE overflowed (the "black image" bug): decode again in fp32.
                vae.to(torch.float32)
                try:
                    out = vae.decode(lat.float(), return_dict=False)[0]
                finally:
                    vae.to(self.dtype)
                warnings.append("the VAE produced NaNs in half precision; decoded in fp32 instead")
        return model.pipe.image_processor.postprocess(out.float(), output_type="pil")

    def infotext(self, req: GenerationRequest, model: LoadedModel, seed: int, extra: dict | None = None) -> str:
        params: dict[str, object] = {
            "Steps": req.steps,
            "Sampler": req.sampler_name,
            "Schedule type": req.scheduler,
            "CFG scale": req.cfg_scale,
            "Seed": seed,
            "Size": f"{req.width}x{req.height}",
            "Model hash": model.model_hash,
            "Model": Path(model.ckpt.name).name,
            "Clip skip": req.clip_skip if req.clip_skip > 1 else None,
        }
        params.update(tasks.infotext_params(req))
        params.update(hires.infotext_params(req))
        params.update(extra or {})
        params.update(dict(req.extra_params))
        params["Version"] = f"v{__version__}"
        return build_infotext(req.prompt, req.negative_prompt, params)
