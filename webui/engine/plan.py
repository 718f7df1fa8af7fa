"""The data that flows through the engine: a loaded model, one pass's spec and result, the
context of one run, and a request's result.

A *run* is one request (or several merged into one UNet batch) on one model: its extensions
are prepared once, then passes run -- the base pass, then the stages' passes (hires fix, face
detail). A *pass* is one diffusers pipeline call, described by a small frozen `PassSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..request import GenerationRequest


@dataclass
class LoadedModel:
    ckpt: object                      # models.catalog.Checkpoint
    pipe: object
    family: str
    model_hash: str | None
    on_device: bool = True
    adapters: object = None           # LoRAs loaded into this pipeline (extensions.lora.AdapterSet)
    pinned: list = field(default_factory=list, repr=False)  # reusable pinned CPU copies of the weights

    @property
    def is_sdxl(self) -> bool:
        return self.family.startswith("sdxl")

    @property
    def is_inpaint(self) -> bool:
        return self.family.endswith("-inpaint")


@dataclass(frozen=True)
class Prompts:
    """The prompts of some rows of a pass: `count` rows with one prompt pair."""
    prompt: str
    negative: str
    count: int


@dataclass(frozen=True, kw_only=True)
class PassSpec:
    """One pipeline call. `task` picks the pipeline kind after preparation ("txt2img",
    "img2img" or "inpaint"); `image` is what it starts from (None, a picture, pictures, or
    latents), `mask` the area an inpaint repaints. `region` and `source_size`: the part of the
    whole picture (of that size) this pass sees, for extensions that make maps of the picture."""
    task: str
    groups: tuple[Prompts, ...]
    seeds: tuple[int, ...]
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    schedule: str
    clip_skip: int = 1
    strength: float = 1.0
    image: object = None
    mask: Image.Image | None = None
    region: tuple[int, int, int, int] | None = None
    source_size: tuple[int, int] | None = None
    decode: bool = True          # False: return latents (a later pass continues from them)
    pad_to: int = 0              # rows to pad the batch to (compiled shapes); padding is dropped
    label: str = ""              # timing keys: "" -> "denoise", "hires " -> "hires denoise"

    @property
    def rows(self) -> int:
        return sum(g.count for g in self.groups)


@dataclass
class PassResult:
    latents: object                              # torch.Tensor, the pass's rows only
    images: list[Image.Image] = field(default_factory=list)  # when spec.decode
    notes: list[list[str]] = field(default_factory=list)     # per prompt group: its warnings


@dataclass
class RunContext:
    """One run: the engine's services, the model, the request(s) and their jobs, the prepared
    extensions, and what the run collects (warnings, timings, infotext keys)."""
    engine: object                    # engine.manager.PipelineManager
    model: LoadedModel
    requests: list[GenerationRequest]
    jobs: list
    extensions: list
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # Textual inversions the passes used, per prompt group (= per merged request): name -> hash.
    embeddings_used: dict[int, dict] = field(default_factory=dict)

    @property
    def request(self) -> GenerationRequest:
        return self.requests[0]

    @property
    def job(self):
        return self.jobs[0]

    def for_subpass(self, prompt: str, negative: str) -> list:
        """The extensions of a later pass (hires, face) with this prompt: those that apply in
        sub-passes, as each chooses (a LoRA set follows the pass's prompt)."""
        subs = (e.for_subpass(self, prompt, negative) for e in self.extensions)
        return [e for e in subs if e is not None]

    def note(self, *messages: str) -> None:
        self.notes.extend(m for m in messages if m not in self.notes)

    def time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds


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
