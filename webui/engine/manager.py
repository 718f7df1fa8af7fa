"""The pipeline manager: the only code that touches the GPU.

One manager per process, pinned to one device. It keeps an LRU of loaded checkpoints (some on
the device, more in pinned CPU memory), and runs every request -- txt2img, img2img, inpaint --
through one method. Per-request things (scheduler, generators, interrupt flags) live in the
request's own pipeline object and Job, never on the shared weights.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

import torch
from PIL import Image

from ..errors import UserError
from ..models.catalog import Catalog, Checkpoint
from ..models.checkpoints import detect_family, load_pipeline, read_shapes
from ..models.embeddings import EmbeddingLibrary
from ..models.vae import VaeLibrary
from ..request import GenerationRequest
from ..settings import Settings
from . import fast, runner
from .denoise import PromptCache, to_pil  # noqa: F401 - to_pil re-exported for benchmarks
from .extensions import controlnet, ipadapter
from .extensions.lora import LoraLibrary
from .extensions.vae import VaeCache
from .jobs import Job
from .memory import stage_peak
from .plan import GenerationResult, LoadedModel, RunContext  # noqa: F401 - the result types, re-exported
from .previews import Previewer
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
        self.vae_cache = VaeCache(self.vaes, self.device, self.dtype)  # VAEs chosen by requests
        self.previews = Previewer(settings.models_dir, settings.preview, self.device, self.dtype)
        self.controlnets = controlnet.ControlNetCache(settings.models_dir, self.device, self.dtype)
        self.ipadapters = ipadapter.IPAdapterCache(settings.models_dir, self.device, self.dtype)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # LRU: last = most recent
        self.prompts = PromptCache()  # prompt embeddings of the last few prompts
        self._active: str | None = None
        self._unloaded: str | None = None  # the active checkpoint unload_models freed, loaded again on use
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
            self._active, self._unloaded = ckpt.name, None
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
            self.prompts.clear()  # keyed by pipeline id, which a new pipeline may reuse
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
            self.prompts.clear()
            self._active = None
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def unload_models(self) -> str | None:
        """Free every loaded checkpoint but keep the selection: the next request (or reload_model)
        loads the one that was active again. Returns its name."""
        with self._gpu:
            name = self._active or self._unloaded
            self.unload_all()
            self._unloaded = name
            return name

    def reload_model(self) -> LoadedModel:
        """Load the selected checkpoint (the one unload_models freed, else the active one)."""
        return self.ensure_model(None)

    def ensure_model(self, name: str | None) -> LoadedModel:
        if name:
            return self.select(name)
        if self.active is None and self._unloaded is not None:
            return self.select(self._unloaded)
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
                    ctx = runner.new_context(self, model, [request], [job])
                    ctx.timings.update(timings)
                    return runner.run_request(ctx, memory={})  # peak memory per stage (memory.py)
            except torch.OutOfMemoryError:
                out_of_memory = True  # handled below, once the traceback (and its tensors) is gone
            finally:
                job.state = "done"
                if self.device.type == "cuda":
                    torch.cuda.empty_cache() if torch.cuda.memory_reserved() > 0.9 * torch.cuda.get_device_properties(
                        self.device).total_memory else None
            if out_of_memory:
                self.free_memory()
                raise UserError(self.out_of_memory_message(request), field="width")

    def out_of_memory_message(self, req: GenerationRequest) -> str:
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
            memory: dict[str, float] = {}
            try:
                with self._fault_hook(model):
                    ctx = runner.new_context(self, model, [request], [job])
                    with stage_peak(self.device, memory, "face detail"):
                        image, params = detailer.engine_pass(ctx, request.init_image.convert("RGB"), request.seed)
            finally:
                job.state = "done"
            shown = request.replace(task="txt2img", enable_hr=False, width=image.width, height=image.height)
            info = runner.infotext(ctx, shown, request.seed, params)
            return GenerationResult(request, [image], [request.seed], [info], model.ckpt.name, model.model_hash,
                                    ctx.notes, ctx.timings, memory=memory, interrupted=job.interrupted)

    def generate_many(self, items: list[tuple[GenerationRequest, Job]]) -> list:
        """Run several compatible requests (see runner.batch_key) as one UNet batch.

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
                with self._fault_hook(model):
                    # Extensions first (equal for all: the batch key), then the prompts'
                    # lengths, since text-encoder LoRAs change the embeddings.
                    everyone = runner.new_context(self, model, reqs, jobs)
                    groups: dict[tuple, list[int]] = {}
                    for i, req in enumerate(reqs):
                        try:
                            groups.setdefault(runner.prompt_length(everyone, req), []).append(i)
                        except Exception as exc:  # noqa: BLE001 -- e.g. a clip skip this model lacks
                            outcomes[i] = exc
                    for members in groups.values():
                        try:
                            ctx = runner.new_context(self, model, [reqs[i] for i in members],
                                                     [jobs[i] for i in members])
                            results = runner.run_merged(ctx, load)
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

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
