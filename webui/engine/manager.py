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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .. import __version__
from ..errors import UserError
from ..metadata.infotext import build_infotext
from ..models.catalog import Catalog, Checkpoint
from ..models.checkpoints import detect_family, load_pipeline, read_shapes
from ..models.embeddings import EmbeddingLibrary
from ..models.vae import VaeLibrary, is_automatic, load_vae
from ..prompts.prompt_encoder import encode_prompts
from ..prompts.prompt_parser import extract_loras
from ..request import GenerationRequest
from ..settings import Settings
from . import fast, tasks
from .extensions import controlnet, ipadapter
from .extensions.lora import AdapterSet, LoraLibrary, merge_tags
from .jobs import Job
from .memory import stage_peak
from .previews import Previewer, denoised_estimate
from .samplers import SchedulerFactory
from .stages import detailer, hires

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


def to_pil(decoded: torch.Tensor, processor) -> list[Image.Image]:
    """VAE output -> PIL images with diffusers' postprocess arithmetic (float32 x 255, rounded),
    done on the device: a quarter of the bytes cross to the CPU, and no per-pixel numpy work
    (8 images of 512x512: 64 ms -> 20 ms on an H200 machine)."""
    images = decoded.float()
    if processor.config.do_normalize:
        images = processor.denormalize(images)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p) for p in pixels]


@dataclass
class LoadedModel:
    ckpt: Checkpoint
    pipe: object
    family: str
    model_hash: str | None
    on_device: bool = True
    adapters: AdapterSet | None = None  # LoRAs loaded into this pipeline
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


@dataclass
class RequestContext:
    """What one request chose beyond the checkpoint: its VAE, its embeddings, and the infotext
    keys they add. Pushed by _generate while it holds the device lock, so decode/embeds calls
    from the hires and face passes use the same choices."""
    vae: torch.nn.Module
    embeddings: dict
    extra: dict


class PipelineManager:
    def __init__(self, settings: Settings, catalog: Catalog | None = None):
        self.settings = settings
        self.catalog = catalog or Catalog(settings.models_dir)
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.schedulers = SchedulerFactory()
        self.loras = LoraLibrary(self.catalog.models_dir / "Lora")
        self.vaes = VaeLibrary(self.catalog.models_dir / "VAE", self.catalog.hashes)
        self.embeddings = EmbeddingLibrary(settings.embedding_dirs)
        # VAEs chosen by requests, on the device: (file, stamp, architecture) -> AutoencoderKL
        self._vae_cache: OrderedDict[tuple, torch.nn.Module] = OrderedDict()
        self._contexts: list[RequestContext] = []  # innermost last; only touched under the lock
        self.previews = Previewer(settings.models_dir, settings.preview, self.device, self.dtype)
        self.controlnets = controlnet.ControlNetCache(settings.models_dir, self.device, self.dtype)
        self.ipadapters = ipadapter.IPAdapterCache(settings.models_dir, self.device, self.dtype)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # LRU: last = most recent
        self._encoded: OrderedDict[tuple, object] = OrderedDict()  # prompt embeddings, LRU
        self._active: str | None = None
        # One lock = one path to the GPU. Requests queue here (the UI queue also limits to one).
        self._gpu = threading.RLock()
        # Fault injection (tests, drills): raised by a UNet call of the next request; see
        # inject_unet_fault.
        self.fail_next_unet_call: BaseException | None = None
        self._fail_after_calls = 0
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

    def inject_unet_fault(self, error: BaseException, after_calls: int = 0) -> None:
        """Make a UNet forward of the next request raise `error` (after `after_calls` good calls),
        so the recovery paths (OOM, crashes mid-denoise) can be exercised on any device."""
        self.fail_next_unet_call, self._fail_after_calls = error, after_calls

    def generate(self, request: GenerationRequest, job: Job | None = None) -> GenerationResult:
        """Run one request end to end. Thread-safe: requests take turns on the device."""
        job = job or Job()
        request = request.resolved_seed()
        with self._gpu:
            t0 = time.perf_counter()
            out_of_memory = False
            try:
                model = self.ensure_model(request.sd_model_checkpoint)
                timings = {"load": time.perf_counter() - t0}
                with self._fault_hook(model):
                    return self._generate(model, request, job, timings)
            except torch.OutOfMemoryError:
                out_of_memory = True  # handled below, once the traceback (and its tensors) is gone
            finally:
                job.state = "done"
                if self.device.type == "cuda":
                    torch.cuda.empty_cache() if torch.cuda.memory_reserved() > 0.9 * torch.cuda.get_device_properties(
                        self.device).total_memory else None
            if out_of_memory:
                self.free_memory()
                raise UserError(self._out_of_memory_message(request), field="width")

    def _out_of_memory_message(self, req: GenerationRequest) -> str:
        """What to lower after an out-of-memory error; the manager stays usable."""
        hints = [f"the size ({req.width}x{req.height})"]
        if req.batch_size > 1:
            hints.append(f"the batch size ({req.batch_size}; raise batch count instead)")
        if req.enable_hr:
            hints.append(f"the hires fix scale ({req.hr_scale}x)")
        log.warning("out of memory on %s at %dx%d, batch %d", self.device, req.width, req.height, req.batch_size)
        return (f"The {self.device.type.upper()} ran out of memory. Lower " + ", ".join(hints)
                + "; memory has been freed, so try again.")

    def free_memory(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @contextmanager
    def _fault_hook(self, model: LoadedModel):
        """Installs the injected fault as a forward pre-hook on the UNet for this request only
        (requests hold the device lock, so no other request runs through it meanwhile)."""
        error = self.fail_next_unet_call
        if error is None:
            yield
            return
        self.fail_next_unet_call = None
        calls = [self._fail_after_calls]

        def pre_hook(module, args, kwargs):
            if calls[0] <= 0:
                handle.remove()
                raise error
            calls[0] -= 1

        handle = model.pipe.unet.register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

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
                # The batch key makes every member share one LoRA set and VAE: set them up once,
                # before encoding (text-encoder LoRAs change the embeddings).
                vae, vae_info = self._request_vae(model, reqs[0])
                lora_info = self._activate_loras(model, reqs[0], [])
                found = [self.embeddings.for_texts([r.prompt, r.negative_prompt]) for r in reqs]  # warnings per request
                embeddings = {name: emb for used, _ in found for name, emb in used.items()}
                self._contexts.append(RequestContext(vae, embeddings, {**lora_info, **vae_info}))
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
                        if isinstance(r, GenerationResult):
                            r.warnings += [w for w in found[i][1] if w not in r.warnings]
                        outcomes[i] = r
            except Exception as exc:  # noqa: BLE001 -- no model: every request gets the error
                outcomes = [o if o is not None else exc for o in outcomes]
            finally:
                if self._contexts:
                    self._contexts.pop()
                for j in jobs:
                    j.state = "done"
        return outcomes

    def _encode(self, model: LoadedModel, clip_skip: int, prompts: list[str], negatives: list[str]):
        """Prompt embeddings, remembered for the last few prompts: artists re-run one prompt with
        new seeds, and the text encoders then cost nothing (the tensors are never modified).
        The key holds everything that changes them: the texts (their <lora:...> tags name the
        text-encoder LoRAs active now) and the textual-inversion files in use."""
        pipe = model.pipe
        t = time.perf_counter()
        embeddings = self._contexts[-1].embeddings if self._contexts else None
        used = tuple(sorted((n, getattr(e, "sha256_12", None)) for n, e in (embeddings or {}).items()))
        key = (id(pipe), tuple(prompts), tuple(negatives), clip_skip, used)
        enc = self._encoded.get(key)
        if enc is None:
            enc = encode_prompts(
                [pipe.tokenizer] + ([pipe.tokenizer_2] if model.is_sdxl else []),
                [pipe.text_encoder] + ([pipe.text_encoder_2] if model.is_sdxl else []),
                prompts, negatives, clip_skip=clip_skip, sdxl=model.is_sdxl, embeddings=embeddings,
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
            extra = dict(self._contexts[-1].extra) if self._contexts else {}
            if enc.used_embeddings:
                extra["TI hashes"] = dict(enc.used_embeddings)
            results.append(GenerationResult(req, images, req_seeds, [self.infotext(req, model, s, extra) for s in req_seeds],
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
                job.notify()  # as in a run of its own: a stop asked for at this step applies now
                if job.stop_requested and job.step < job.total_steps:
                    # Stopping one user's job must not stop the others sharing the batch: keep
                    # what a run of its own would keep (the sampler's denoised estimate if any).
                    latents = kwargs["latents"]
                    x0 = denoised_estimate(pipe, latents) if job.interrupted else None
                    frozen[k] = (x0 if x0 is not None else latents)[rows[k]].clone()
                    job.cut_short = True
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
        prepared = tasks.prepare(req, model)  # resized init image, masks, crop region...
        scheduler_cfg = model.pipe.scheduler.config
        # Per request, under the device lock: exactly this request's LoRAs, VAE and embeddings.
        vae, vae_info = self._request_vae(model, req)  # first: a bad VAE name fails before any loading
        lora_info = self._activate_loras(model, req, warnings)
        embeddings, emb_warnings = self.embeddings.for_texts([req.prompt, req.negative_prompt])
        warnings += emb_warnings
        ctx = RequestContext(vae, embeddings, {**lora_info, **vae_info})
        self._contexts.append(ctx)
        try:
            return self._run_batches(model, req, job, timings, prepared, scheduler_cfg, ctx, seeds, memory,
                                     warnings)
        finally:
            self._contexts.pop()

    def _run_batches(self, model, req, job, timings, prepared, scheduler_cfg, ctx, seeds, memory,
                     warnings) -> GenerationResult:
        images: list[Image.Image] = []
        infotexts: list[str] = []
        done_seeds: list[int] = []
        control = controlnet.prepare_control(self.controlnets, req.controlnet_units, model.pipe.unet.config,
                                             prepared, self.catalog.hashes, warnings)
        out_of_memory = False
        try:
            for b in range(req.n_iter):
                if job.interrupted:
                    break
                if b and req.face_detail:
                    self._activate_loras(model, req, [])  # the face pass may have activated its own set
                batch_seeds = seeds[b * req.batch_size:(b + 1) * req.batch_size]
                job.start_batch(b, req.n_iter)
                if tasks.skip_denoise(req):
                    decoded = [prepared.image] * len(batch_seeds)
                else:
                    scheduler, notes = self.schedulers.build(scheduler_cfg, req.sampler_name, req.scheduler)
                    warnings += [n for n in notes if n not in warnings]
                    pipe = tasks.task_pipeline(model, prepared, scheduler, vae=self.request_vae(model),
                                               controlnet=control.net if control else None)
                    control_args = controlnet.pipeline_kwargs(pipe.__class__.__name__, req.controlnet_units,
                                                              control.images, warnings) if control else {}
                    t = time.perf_counter()
                    embeds = self.embeds(model, pipe, req.prompt, req.negative_prompt, len(batch_seeds), req.clip_skip,
                                         warnings)
                    timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - t
                    generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
                    t = time.perf_counter()
                    with stage_peak(self.device, memory, "base"):
                        with ipadapter.applied(self.ipadapters, pipe, req.ip_adapters, model.pipe.unet.config) as ip_args:
                            latents = pipe(
                                **tasks.pipeline_inputs(req, prepared, model),
                                **control_args,
                                **ip_args,
                                **embeds,
                                num_inference_steps=req.steps,
                                guidance_scale=req.cfg_scale,
                                generator=generators if len(generators) > 1 else generators[0],
                                output_type="latent",
                                callback_on_step_end=self._step_callback(job, model, req),
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
                                                        warnings, timings, control)
                if job.cut_short and not job.interrupted:
                    continue  # Skip: this batch's unfinished pictures are dropped, the next batch starts
                # Interrupt keeps the picture it stopped (the sampler's denoised estimate where it has one),
                # marked in its infotext, since the seed alone no longer reproduces it.
                stopped = {"Interrupted at step": f"{job.step}/{job.total_steps}"} if job.cut_short else {}
                for img, seed in zip(decoded, batch_seeds):
                    img = tasks.finish(img, prepared)  # paste inpaint result back over the original
                    extra = dict(control.params) if control else {}
                    extra.update({f"IP-Adapter {n}": a.infotext() for n, a in enumerate(req.ip_adapters)})
                    if req.face_detail and not job.interrupted:
                        with stage_peak(self.device, memory, "face detail"):
                            img, face = detailer.engine_pass(self, model, req, img, seed, job, warnings, timings)
                            extra.update(face)
                    images.append(img)
                    done_seeds.append(seed)
                    infotexts.append(self.infotext(req, model, seed, {**ctx.extra, **extra, **stopped}))
        except torch.OutOfMemoryError:
            if not images:
                raise  # nothing finished yet: generate() reports it
            out_of_memory = True  # handled below, once the traceback (and its tensors) is gone
        if out_of_memory:
            # Never lose finished pictures: keep them and say what to lower for the rest.
            self.free_memory()
            warnings.append(self._out_of_memory_message(req).replace("; memory has been freed, so try again.", "")
                            + f". Kept the {len(images)} image(s) finished before it.")
        timings["total"] = sum(v for k, v in timings.items())
        return GenerationResult(req, images, done_seeds, infotexts, model.ckpt.name, model.model_hash,
                                warnings, timings, memory=memory or {}, interrupted=job.interrupted)

    def embeds(self, model: LoadedModel, pipe, prompt: str, negative: str, count: int, clip_skip: int,
               warnings: list[str]) -> dict:
        """Prompt embeddings (A1111 syntax, long prompts) as pipeline keyword arguments."""
        enc, _took = self._encode(model, clip_skip, [prompt] * count, [negative] * count)
        warnings += [w for w in enc.warnings if w not in warnings]
        if enc.used_embeddings and self._contexts:
            extra = self._contexts[-1].extra
            extra["TI hashes"] = {**extra.get("TI hashes", {}), **enc.used_embeddings}
        dev, dt = self.device, model.pipe.unet.dtype
        out = {"prompt_embeds": enc.prompt_embeds.to(dev, dt),
               "negative_prompt_embeds": enc.negative_prompt_embeds.to(dev, dt)}
        if model.is_sdxl:
            out["pooled_prompt_embeds"] = enc.pooled_prompt_embeds.to(dev, dt)
            out["negative_pooled_prompt_embeds"] = enc.negative_pooled_prompt_embeds.to(dev, dt)
        return out

    def _step_callback(self, job: Job, model: LoadedModel | None = None, req: GenerationRequest | None = None):
        """Progress, previews (when `model` and `req` are given) and Skip/Interrupt, per step."""
        every = self.settings.preview_every
        previews = self.previews if every > 0 and model is not None and req is not None else None

        def on_step(pipe, i, t, kwargs):
            job.step = i + 1
            job.total_steps = getattr(pipe, "_num_timesteps", None) or job.total_steps
            out = {}
            latents = kwargs.get("latents")
            last = job.step >= job.total_steps
            if previews is not None and latents is not None and not last and not job.stop_requested \
                    and job.step % every == 0:
                self._preview(job, pipe, latents, model, req)
            job.notify()  # listeners (progress bars, tests) see this step; a stop they ask for applies now
            if job.stop_requested and not last:
                pipe._interrupt = True  # this request's own pipeline object: nobody else's
                job.cut_short = True
                x0 = denoised_estimate(pipe, latents) if job.interrupted and latents is not None else None
                if x0 is not None:
                    out["latents"] = x0  # the kept picture is the cleanest one the sampler has
            return out
        return on_step

    def _preview(self, job: Job, pipe, latents, model: LoadedModel, req: GenerationRequest) -> None:
        try:
            x0 = denoised_estimate(pipe, latents)
            image = self.previews.render(x0 if x0 is not None else latents, model.family, (req.width, req.height))
            if image is not None:
                job.set_preview(image, self.previews.kind(model.family))
        except Exception:  # noqa: BLE001 - a preview must never cost the user the image
            log.exception("live preview failed; generation continues")

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ---- LoRA and VAE per request ----------------------------------------------------------------

    def _activate_loras(self, model: LoadedModel, req: GenerationRequest, warnings: list[str]) -> dict:
        """Activate exactly the request's `<lora:...>` set on the model (none: LoRA off).
        Returns the infotext keys ("Lora hashes"). Unknown or unusable LoRAs are warnings, as in
        A1111; a name that points outside models/Lora is refused (UserError)."""
        _, tags, _ = extract_loras(req.prompt)  # syntax warnings come from the prompt encoder
        tags, notes = merge_tags(tags)
        warnings += notes
        if extract_loras(req.negative_prompt)[1]:
            warnings.append("LoRA tags in the negative prompt have no effect (as in A1111); they were removed "
                            "from its text. Use a negative weight in the prompt, e.g. <lora:name:-0.5>.")
        wanted = []
        for name, weight in tags:
            f = self.loras.find(name)
            if f is None:
                warnings.append(f"LoRA {name!r} was not found in {self.loras.folder.name}/; it was ignored")
                continue
            wanted.append((f, weight))
        if model.adapters is None:
            if not wanted:
                return {}  # nothing ever loaded into this model: nothing to turn off
            model.adapters = AdapterSet(model.pipe)
        warnings += model.adapters.activate(wanted)
        applied = {a for a, _ in model.adapters.active}
        hashes = {}
        for f, _ in wanted:
            if model.adapters.adapter_of(f) in applied:
                hashes[f.name] = self.loras.short_hash(f)
        return {"Lora hashes": hashes} if hashes else {}

    def _request_vae(self, model: LoadedModel, req: GenerationRequest) -> tuple[torch.nn.Module, dict]:
        """The VAE this request decodes (and encodes) with, and its infotext keys. The
        checkpoint's own VAE is never modified; chosen VAEs are cached on the device."""
        if is_automatic(req.sd_vae):
            return model.pipe.vae, {}
        vf = self.vaes.find(req.sd_vae)
        like = model.pipe.vae
        key = (str(vf.path), vf.stamp, tuple(like.config.block_out_channels), like.config.latent_channels,
               like.config.scaling_factor)
        vae = self._vae_cache.get(key)
        if vae is None:
            vae = load_vae(vf, like).to(self.device, self.dtype)
            self._vae_cache[key] = vae
            while len(self._vae_cache) > 2:
                self._vae_cache.popitem(last=False)
        self._vae_cache.move_to_end(key)
        return vae, {"VAE hash": self.vaes.short_hash(vf), "VAE": vf.name}

    def request_vae(self, model: LoadedModel):
        """The running request's own VAE when it chose one (for task pipelines), else None."""
        vae = self._contexts[-1].vae if self._contexts else None
        return vae if vae is not None and vae is not model.pipe.vae else None

    @torch.no_grad()
    def decode(self, model: LoadedModel, latents: torch.Tensor, warnings: list[str],
               vae: torch.nn.Module | None = None) -> list[Image.Image]:
        if vae is None:
            vae = self.request_vae(model)
        if vae is None:
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
        return to_pil(out, model.pipe.image_processor)

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
