"""The front door: the UI and the REST API call Service's methods (fields in, saved result out;
model listings; jobs) and never reach into its catalog, manager, queue or job registry.

Service holds what the app builds once at start-up (settings, catalog, the pipeline manager,
the job registry) and passes to the UI and API builders -- there are no other globals. Its job
methods live in service_jobs.py.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from ..models.catalog import Catalog, Checkpoint
from ..models.embeddings import Embedding
from ..models.mediapipe_masks import auto_mask, preset_mask
from ..engine.manager import GenerationResult, PipelineManager
from ..errors import UserError
from .gpu_queue import GPUQueue, in_caller_context
from .identity import Caller
from ..engine.jobs import Job, JobRegistry, Snapshot
from ..engine.extensions.lora import LoraFile
from .memory_budget import ClientBudget, check_request, estimate
from .outputs import save_result
from ..prompts.preset_files import load_presets
from ..prompts.presets import Preset, find_preset, normalize_family
from ..prompts.prompting import expand_prompts
from .ratelimit import RateLimiter
from ..request import GenerationRequest, build_request, check_prompt_lengths
from .service_characters import ServiceCharacters
from .service_jobs import ServiceJobs
from .service_tools import ServiceTools
from .service_options import ServiceOptions
from ..settings import Settings
from .spaces import gpu
from ..prompts.style_files import load_style_library, style_places
from ..prompts.styles import StyleLibrary
from ..prompts.glossary import GlossaryTranslator
from ..prompts.translate import Translator, make_translator, translate_prompt
from ..prompts.translator_download import download_status, with_download
from ..models.vae import VaeFile
from ..validate import check_fields

log = logging.getLogger(__name__)

# Fields Service.prepare reads itself (build_request never sees them).
_OWN_FIELDS = ("preset", "characters", "translated_prompt", "translated_negative_prompt", "translated_from")

DEMO_NOTICE = ("Demo mode: the loaded model has random weights and draws coloured noise. It is here "
               "to try the interface. Put a real checkpoint in models/Stable-diffusion (or start with "
               "--model) to paint portraits.")


@dataclass
class Service(ServiceJobs, ServiceTools, ServiceOptions, ServiceCharacters):
    settings: Settings
    catalog: Catalog
    manager: PipelineManager
    jobs: JobRegistry = field(default_factory=JobRegistry)
    rate: RateLimiter | None = None
    safety: Any = None  # safety.SafetyFilter when --safety-filter is on
    # generate_stream, wrapped with spaces.GPU on ZeroGPU (it must be wrapped at start-up)
    gpu_stream: Callable[..., Iterator] | None = None
    styles: StyleLibrary = field(default_factory=StyleLibrary)
    presets: dict[str, Preset] = field(default_factory=dict)
    translator: Translator | None = None
    # Problems met at start-up (bad preset files, broken styles.csv rows, translator fallback),
    # shown to the artist as a notice.
    startup_problems: list[str] = field(default_factory=list)

    queue: GPUQueue | None = None  # built in __post_init__ from the manager and settings
    client_bytes: ClientBudget | None = None  # likewise: memory each client's requests may hold
    poses_dir: Path | None = None  # the pose library (None: presets/poses)

    def __post_init__(self):
        if self.gpu_stream is None:
            self.gpu_stream = gpu(self.generate_stream)
        if self.queue is None:
            self.queue = GPUQueue(self.manager, max_batch=self.settings.limits.max_batch_size,
                                  batching=self.settings.batching, admit=self._admit_job)
        if self.client_bytes is None:
            self.client_bytes = ClientBudget(2 * self.settings.limits.max_request_bytes)

    @classmethod
    def create(cls, settings: Settings, load_model: bool = True) -> "Service":
        if settings.demo:
            from ..models.tiny_models import ensure_demo_model
            ensure_demo_model(settings.models_dir)
        catalog = Catalog(settings.models_dir)
        if settings.model:
            first = catalog.add(settings.model)
        elif settings.demo:
            first = catalog.find("demo-tiny-sd15")
        else:
            first = catalog.list()[0] if catalog.list() else None
        manager = PipelineManager(settings, catalog)
        safety = None
        if settings.safety_filter:
            from ..models.safety import load_safety_filter
            safety = load_safety_filter(settings.models_dir, manager.device)
        rate = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        styles = load_style_library(style_places(settings.models_dir))
        presets, preset_problems = load_all_presets(settings.models_dir / "presets", styles.names())
        download = settings.translator_download and not settings.demo  # --demo promises no network
        translator, translator_problems = build_translator(settings.translator, download)
        problems = [f"styles: {p}" for p in styles.problems] + [f"presets: {p}" for p in preset_problems]
        problems += translator_problems
        for p in problems:
            log.warning("%s", p)
        service = cls(settings, catalog, manager, rate=rate, safety=safety, styles=styles, presets=presets,
                      translator=translator, startup_problems=problems)
        if load_model and first is not None:
            manager.select(first.name)
            if settings.fast and settings.warmup:
                service.warmup()
        return service

    @property
    def demo_active(self) -> bool:
        m = self.manager.active
        return m is not None and m.ckpt.name.endswith("demo-tiny-sd15")

    def request(self, fields: dict[str, Any], task: str = "txt2img") -> GenerationRequest:
        req, notes = self.prepare(fields, task)
        for n in notes:
            log.info("prompt: %s", n)
        return req

    def prepare(self, fields: dict[str, Any], task: str = "txt2img") -> tuple[GenerationRequest, list[str]]:
        """Validate fields into a request whose prompts are what the model will read.

        Beyond the A1111 fields this reads `preset` (a preset name: its template wraps the prompt,
        and it fills every field the caller did not send), `translated_prompt` /
        `translated_negative_prompt` (the artist's edited English) with `translated_from` (the
        prompt that English was made for; a stale one is ignored), `characters` (names: their text,
        LoRA tags and reference images are added; service_characters.py). Returns the request and notes
        for the artist (translation problems, what a character is missing).
        """
        fields = self.request_options(fields)  # CLIP_stop_at_last_layers, sd_vae (override_settings)
        check_fields({k: fields[k] for k in _OWN_FIELDS if k in fields})  # build_request checks the rest
        preset = self.preset(fields.pop("preset", None))
        override = fields.pop("translated_prompt", None)
        override_neg = fields.pop("translated_negative_prompt", None)
        made_for = fields.pop("translated_from", None)
        if made_for is not None and made_for != (fields.get("prompt") or ""):
            override = override_neg = None  # the prompt changed after the preview
        characters, char_notes = self.expand_characters(fields)  # infotext text peeled, images added
        if preset is not None:
            for key, value in preset.to_request_fields(self.family()).items():
                if fields.get(key) is None:
                    fields[key] = value
        req = build_request(fields, self.settings.limits, task)
        exp = expand_prompts(req.prompt, req.negative_prompt, styles=req.styles, library=self.styles,
                             preset=preset, translator=self.translator,
                             translated_prompt=override if isinstance(override, str) else None,
                             translated_negative_prompt=override_neg if isinstance(override_neg, str) else None)
        pos, neg, char_params = self.append_characters(exp.prompt, exp.negative_prompt, characters)
        req = replace(req, prompt=pos, negative_prompt=neg,
                      extra_params=tuple(exp.infotext_params) + tuple(char_params) + req.extra_params)
        check_prompt_lengths(req, self.settings.limits.max_prompt_chars)
        if req.mask_preset:  # the mask found in the picture, united with any drawn one
            req = replace(req, mask=preset_mask(req.init_image, req.mask_preset, req.mask))
        # The one gate before the GPU queue (UI, REST, Extras' face pass): uploads x batch x
        # count must fit the server's memory budget.
        check_request(req, self.settings.limits.max_request_bytes)
        return req, char_notes + exp.notes

    def preset(self, name: str | None) -> Preset | None:
        """The preset called `name` (English or Chinese name, label or file id); None for none."""
        if not name or not isinstance(name, str) or name.strip() in ("", "None"):
            return None
        return find_preset(self.presets, name)

    def translate(self, text: str) -> tuple[str, list[str]]:
        """English for a prompt (unchanged when it has no CJK), and warnings: the UI's preview."""
        result = translate_prompt(text or "", self.translator)
        return result.english, result.warnings

    def translation_status(self) -> tuple[str, int]:
        """The MarianMT background download: ("downloading", percent), ("failed", 0) or ("", ...)."""
        return download_status(self.translator)

    def find_mask(self, image, preset: str):
        """The inpaint mask `preset` ("face", "person", "background", "hands") finds in `image`
        ('L', white = repaint); finding nothing is a UserError naming what is missing."""
        return auto_mask(image, preset)

    def pose_from_photo(self, photo, name: str = "") -> tuple[dict, Any]:
        """The pose of the person in `photo` as a pose-library entry, and its skeleton to preview.
        MediaPipe runs on the CPU beside the GPU queue; a UserError when no person is found."""
        from ..imaging.poses import parse_pose, render_pose
        from ..models.mediapipe_pose import pose_from_photo
        from ..request import check_upload

        check_upload(photo, self.settings.limits, "image")
        data = pose_from_photo(photo, name=name if isinstance(name, str) else "")
        pose, _ = parse_pose(data, "photo")
        return data, render_pose(pose, max(64, round(384 * min(pose.aspect, 2.0))), 384)

    def save_pose(self, name: str, pose: dict) -> str:
        """Add `pose` (a pose-library entry) to the library as `name`; its key for requests."""
        from ..imaging.poses import save_pose

        return save_pose(name, pose, self.poses_dir).key

    def family(self) -> str:
        """"sd1", "sd2" or "sdxl" for the active model (sd1 when none is loaded)."""
        m = self.manager.active
        try:
            return normalize_family(m.family) if m is not None else "sd1"
        except UserError:
            return "sd1"

    def generate(self, req: GenerationRequest, owner: Caller | str | None = None,
                 listener: Callable[[Job], None] | None = None, job: Job | None = None,
                 override_settings: dict[str, Any] | None = None) -> GenerationResult:
        """Run a validated request and save its images (a failed save only adds a warning) as
        the options say (`override_settings`: the request's own, on top)."""
        saving, ignored = self.saving_options(override_settings)
        job = job or self.jobs.new(owner)
        job.listener = in_caller_context(listener)
        # Every generation goes through the one GPU queue: fair between owners, and batched
        # with other users' compatible requests when they wait at the same time. What it holds
        # in memory counts against its client's share until the result is handed back.
        client = job.caller.rate_key(self.settings.rate_limit_by) if job.caller is not None else None
        with self.client_bytes.hold(client, estimate(req).total):
            result = self.queue.run(req, job)
        if self.safety is not None:
            self.safety.apply(result)  # before saving: a hidden image never reaches the disk
        result.warnings.extend(ignored)
        if req.save_images and saving["samples_save"]:
            save_result(result, self.settings.outputs_dir, options=saving)
        self.jobs.record(job.owner, result)
        return result

    def generate_stream(self, req: GenerationRequest, owner: Caller | str | None = None,
                        poll_s: float = 0.25) -> Iterator[Snapshot | GenerationResult]:
        """Run `req` in a worker thread, yielding Snapshots (step, ETA, queue position, new
        previews) while it runs and the GenerationResult last. Closing the generator early
        (the browser went away) interrupts the job; finished images are still saved."""
        job = self.jobs.new(owner)
        changed, done = threading.Event(), threading.Event()
        box: dict[str, Any] = {}

        def work():
            try:
                box["result"] = self.generate(req, owner=owner, listener=lambda _j: changed.set(), job=job)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = e
            finally:
                done.set()
                changed.set()

        worker = threading.Thread(target=work, name=f"job-{job.id[:8]}", daemon=True)
        worker.start()
        shown_preview, last_text = -1, None
        try:
            # Not `worker.is_alive()`: the thread lives on for a moment after its last signal,
            # and the result would then wait out a whole extra poll.
            while not done.is_set():
                changed.wait(poll_s)
                changed.clear()
                if done.is_set():
                    break
                new = job.preview is not None and job.preview_count != shown_preview
                text = job.status_text()
                if new or text != last_text:
                    shown_preview, last_text = job.preview_count, text
                    yield Snapshot(text, job.progress(), job.preview if new else None, job.preview_kind)
            worker.join()
        except GeneratorExit:
            job.interrupt()
            raise
        if "error" in box:
            raise box["error"]
        yield box["result"]

    def admit(self, caller: Caller | None) -> None:
        """The rate limit (--rate-limit) for GPU work a caller asks for; raises RateLimited
        (a UserError) with the wait when the caller is over it. Internal work (no caller) is free."""
        if self.rate is not None and caller is not None:
            self.rate.admit(caller.rate_key(self.settings.rate_limit_by))

    def _admit_job(self, job: Job) -> None:
        # Every job passes here on its way into the GPU queue: UI, REST, Extras alike.
        self.admit(job.caller)

    def close(self) -> None:
        """Finish queued jobs, stop the GPU worker and free the models (tests, benchmarks)."""
        self.queue.close()
        self.manager.unload_all()

    def warmup(self) -> None:
        """Fast mode: compile the common sizes now rather than on users' first requests. Runs
        through the queue, on the thread that will replay the CUDA graphs."""
        from ..engine.fast import WARMUP_SIZES

        model = self.manager.active
        if model is None:
            return
        for w, h in WARMUP_SIZES["sdxl" if model.is_sdxl else "sd"]:
            req = self.request({"prompt": "warm-up", "steps": 2, "width": w, "height": h, "save_images": False})
            self.generate(req, owner="warm-up")
            log.info("fast mode: compiled %dx%d", w, h)

    def select_model(self, name: str, caller: Caller | None = None) -> str:
        # Loading a checkpoint is GPU work: it waits its turn in the queue (and the rate limit).
        job = self.jobs.new(caller)
        try:
            model = self.queue.call(lambda: self.manager.select(name), job)
        finally:
            job.state = "done"
        return self.catalog.title(model.ckpt)

    def checkpoint_titles(self) -> list[str]:
        return [self.catalog.title(c) for c in self.catalog.list()]

    def active_title(self) -> str | None:
        m = self.manager.active
        return self.catalog.title(m.ckpt) if m else None

    def active_hash(self) -> str | None:
        """The active checkpoint's sha256 when known (None when none is loaded or not hashed yet)."""
        m = self.manager.active
        return self.catalog.known_hash(m.ckpt) if m else None

    def checkpoints(self) -> list[tuple[Checkpoint, str, str | None]]:
        """Each checkpoint in the models folder with its title and its sha256 when known."""
        return [(c, self.catalog.title(c), self.catalog.known_hash(c)) for c in self.catalog.list()]

    def checkpoint_title(self, name: str) -> str:
        """The title of the checkpoint a title, name or hash finds; UserError when none does."""
        return self.catalog.title(self.catalog.find(name))

    def refresh_checkpoints(self) -> None:
        """Rescan the checkpoints folder."""
        self.catalog.refresh()

    def vae_files(self) -> list[VaeFile]:
        """The VAE files the loader may use (nothing that links out of models/VAE)."""
        return self.manager.vaes.list()

    def vae_names(self) -> list[str]:
        """The VAE choices: "Automatic", then the files."""
        return self.manager.vaes.names()

    def prompt_styles(self) -> list[dict]:
        """The styles the UI offers and txt2img `styles` accepts, as /prompt-styles lists them."""
        return self.styles.to_api()

    def lora_files(self) -> list[LoraFile]:
        """The LoRA files in models/Lora."""
        return self.manager.loras.list()

    def embedding_names(self) -> list[str]:
        """The names of the embeddings prompts may use, sorted case-insensitively."""
        return sorted(self.manager.embeddings.files(), key=str.lower)

    def embeddings(self) -> list[tuple[str, Embedding, bool]]:
        """Each readable embedding (name, embedding, whether the active model can use it); a
        damaged file is left out (a prompt that uses it gets a warning)."""
        m, out = self.manager.active, []
        library = self.manager.embeddings  # the files prompts use, links out of the folders left out
        for name, path in library.files().items():
            try:
                emb = library.get(name, path)
            except UserError:
                continue
            width = int(next(iter(emb.vectors.values())).shape[-1])
            out.append((name, emb, m is None or (emb.is_sdxl == m.is_sdxl and (
                m.is_sdxl or width == m.pipe.text_encoder.config.hidden_size))))
        return out


def load_all_presets(user_dir: Path, style_names: list[str]) -> tuple[dict[str, Preset], list[str]]:
    """The shipped presets, then the artist's own from <models>/presets (same name: theirs wins)."""
    presets, problems = load_presets(known_styles=style_names)
    if user_dir.is_dir():
        mine, mine_problems = load_presets(user_dir, known_styles=style_names)
        presets.update(mine)
        problems += [f"{user_dir.name}/{p}" for p in mine_problems]
        presets = dict(sorted(presets.items(), key=lambda kv: (kv[1].order, kv[0].casefold())))
    return presets, problems


def build_translator(setting: str, download: bool = True) -> tuple[Translator | None, list[str]]:
    """The one translator the app uses; a setting that cannot work falls back to the glossary; auto
    without a cached MarianMT model fetches it in the background when `download` (translator_download.py)."""
    try:
        return with_download(make_translator(setting), setting, download), []
    except UserError as e:
        return GlossaryTranslator(), [f"translator: {e} Using the built-in glossary instead."]


__all__ = ["DEMO_NOTICE", "Service", "UserError", "build_translator"]
