"""Generation presets: one JSON file per preset in ``presets/`` (schema in presets/README.md).

A preset bundles the settings that make a look work: styles, a prompt template, a negative
prompt, sampler/scheduler/steps/CFG, an image size for each model family, and optionally
hires fix, face detail and model recommendations.

* :func:`load_presets` (``preset_files.py``, with the checks of each file) reads a folder; a
  broken file is reported by name and skipped, loading never raises.
* :meth:`Preset.to_request_fields` gives the A1111 API field values for a model family.
* :func:`apply_preset` expands the preset's prompt template around the user's prompt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webui.errors import UserError
from webui.prompts.styles import PROMPT_PLACEHOLDER, join_prompts, merge_template

__all__ = [
    "PRESETS_DIR",
    "FAMILIES",
    "NATIVE_RESOLUTION",
    "KNOWN_SAMPLERS",
    "KNOWN_SCHEDULERS",
    "HiresFix",
    "FaceDetail",
    "Recommended",
    "Preset",
    "normalize_family",
    "find_preset",
    "apply_preset",
]

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"

FAMILIES: tuple[str, ...] = ("sd1", "sd2", "sdxl")
NATIVE_RESOLUTION = {"sd1": 512, "sd2": 768, "sdxl": 1024}

_FAMILY_ALIASES = {
    "sd1": "sd1", "sd15": "sd1", "sd1.5": "sd1", "sd 1.5": "sd1", "sd-1.5": "sd1", "v1": "sd1",
    "sd1x": "sd1", "sd2": "sd2", "sd21": "sd2", "sd2.1": "sd2", "sd 2.1": "sd2", "sd2.0": "sd2",
    "v2": "sd2", "sd2x": "sd2", "sdxl": "sdxl", "xl": "sdxl", "sd xl": "sdxl", "sd-xl": "sdxl",
    "sdxl1.0": "sdxl", "sdxl 1.0": "sdxl",
}

try:  # the samplers and schedule types this UI can run
    from webui.samplers_names import SAMPLERS as _SAMPLERS, SCHEDULE_TYPES as _SCHEDULES
except ImportError:  # pragma: no cover - tables not available
    _SAMPLERS = ("DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "Euler a", "Euler", "LMS", "Heun",
                 "DPM2", "DPM2 a", "DDIM", "PLMS", "UniPC", "LCM")
    _SCHEDULES = ("Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform", "Simple", "Beta")

KNOWN_SAMPLERS: frozenset[str] = frozenset(_SAMPLERS)
KNOWN_SCHEDULERS: frozenset[str] = frozenset(_SCHEDULES)

STEPS_RANGE = (1, 150)
CFG_RANGE = (1.0, 30.0)
SIZE_RANGE = (64, 4096)


def normalize_family(family: str) -> str:
    """``"sd1"``, ``"sd2"`` or ``"sdxl"`` for a model family name or a common alias."""
    key = str(family or "").strip().lower()
    for suffix in ("-inpaint", "_inpaint", " inpaint", "-inpainting"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    if key in _FAMILY_ALIASES:
        return _FAMILY_ALIASES[key]
    raise UserError(
        f"Unknown model family '{family}'; expected one of {', '.join(FAMILIES)}.", field="family"
    )


@dataclass(frozen=True)
class HiresFix:
    """Hires fix: upscale the first pass and run a second, partial denoising pass."""

    scale: float
    upscaler: str
    steps: int  # 0 = same number of steps as the first pass
    denoising_strength: float
    families: tuple[str, ...] = FAMILIES  # model families it is switched on for


@dataclass(frozen=True)
class FaceDetail:
    """Face detail pass: find faces, re-draw each at higher resolution, paste back."""

    enabled: bool = True
    prompt: str = ""  # may contain {prompt}; empty = the main prompt
    negative_prompt: str = ""
    denoising_strength: float = 0.4
    confidence: float = 0.3
    mask_blur: int = 4
    padding: int = 32
    steps: int = 0  # 0 = same as the main pass

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "denoising_strength": self.denoising_strength,
            "confidence": self.confidence,
            "mask_blur": self.mask_blur,
            "padding": self.padding,
            "steps": self.steps,
        }


@dataclass(frozen=True)
class Recommended:
    checkpoints: tuple[str, ...] = ()
    loras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preset:
    name: str
    name_zh: str
    description: str
    description_zh: str
    styles: tuple[str, ...]
    prompt: str
    negative_prompt: str
    sampler_name: str
    scheduler: str
    steps: int
    cfg_scale: float
    sizes: Mapping[str, tuple[int, int]]  # only the families the file gives
    hires: HiresFix | None = None
    face_detail: FaceDetail | None = None
    recommended: Recommended = field(default_factory=Recommended)
    tags: tuple[str, ...] = ()
    order: int = 1000  # menu position, smaller first
    id: str = ""  # file name without .json
    source: str = ""  # file name

    @property
    def label(self) -> str:
        """Display label for menus, in both languages: "影棚人像 · Studio Portrait"."""
        return f"{self.name_zh} · {self.name}" if self.name_zh else self.name

    def size_for(self, family: str) -> tuple[int, int]:
        """(width, height) for a family; one the file leaves out is derived from another
        family's aspect ratio at this family's native resolution (multiples of 8)."""
        fam = normalize_family(family)
        if fam in self.sizes:
            return self.sizes[fam]
        for other in ("sdxl", "sd2", "sd1"):
            if other in self.sizes:
                w, h = self.sizes[other]
                area = NATIVE_RESOLUTION[fam] ** 2
                aspect = w / h
                nw = max(64, int(round(math.sqrt(area * aspect) / 8)) * 8)
                nh = max(64, int(round(math.sqrt(area / aspect) / 8)) * 8)
                return nw, nh
        n = NATIVE_RESOLUTION[fam]
        return n, n

    def hires_for(self, family: str) -> HiresFix | None:
        fam = normalize_family(family)
        if self.hires is not None and fam in self.hires.families:
            return self.hires
        return None

    def to_request_fields(
        self,
        family: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
    ) -> dict[str, Any]:
        """A1111 request fields for ``family`` ("sd1", "sd2", "sdxl" or an alias).

        Always: styles, negative_prompt, sampler_name, scheduler, steps, cfg_scale, width,
        height, enable_hr; with hires fix for this family also hr_scale, hr_upscaler,
        hr_second_pass_steps, denoising_strength. With ``prompt`` given, also ``prompt``
        (the expanded template); a given ``negative_prompt`` is put before the preset's.
        Face detail settings are not A1111 fields: read :attr:`face_detail`.
        """
        width, height = self.size_for(family)
        fields: dict[str, Any] = {}
        if prompt is not None:
            fields["prompt"] = apply_preset(prompt, self)
        fields.update(
            styles=list(self.styles),
            negative_prompt=join_prompts(negative_prompt or "", self.negative_prompt),
            sampler_name=self.sampler_name,
            scheduler=self.scheduler,
            steps=self.steps,
            cfg_scale=self.cfg_scale,
            width=width,
            height=height,
        )
        hires = self.hires_for(family)
        fields["enable_hr"] = hires is not None
        if hires is not None:
            fields.update(
                hr_scale=hires.scale,
                hr_upscaler=hires.upscaler,
                hr_second_pass_steps=hires.steps,
                denoising_strength=hires.denoising_strength,
            )
        return fields


def apply_preset(prompt: str, preset: Preset) -> str:
    """The preset's prompt template with ``prompt`` in place of ``{prompt}``."""
    return merge_template(preset.prompt or PROMPT_PLACEHOLDER, prompt or "")


def find_preset(presets: Mapping[str, Preset], key: str) -> Preset:
    """Look a preset up by English name, Chinese name, label or file id; UserError if none."""
    if key in presets:
        return presets[key]
    k = (key or "").strip()
    for p in presets.values():
        if k in (p.name_zh, p.label, p.id) or k.casefold() == p.name.casefold():
            return p
    known = ", ".join(presets) or "none"
    raise UserError(f"Unknown preset '{key}'. Available presets: {known}.", field="preset")
