"""Preset files: read and check one preset's JSON (every problem reported as "file: where:
what", a preset with errors skipped), and load a folder of them, never raising. The shape of
a preset (:class:`Preset` and its parts) and its use live in ``presets.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from webui.models.model_files import scan
from webui.prompts.presets import (
    CFG_RANGE,
    FAMILIES,
    KNOWN_SAMPLERS,
    KNOWN_SCHEDULERS,
    PRESETS_DIR,
    SIZE_RANGE,
    STEPS_RANGE,
    FaceDetail,
    HiresFix,
    Preset,
    Recommended,
)
from webui.prompts.styles import BUILTIN_STYLES, PROMPT_PLACEHOLDER


class _Checker:
    """Collects "where: what is wrong" messages while reading one preset."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}" if where else message)

    def keys(self, obj: Mapping[str, Any], where: str, allowed: set[str], required: set[str]) -> None:
        for key in obj:
            if key not in allowed and not key.startswith("_"):
                hint = sorted(allowed)
                self.error(f"{where}{key}", f"unknown key (allowed: {', '.join(hint)})")
        for key in sorted(required):
            if key not in obj:
                self.error(f"{where}{key}", "missing")

    def string(self, obj: Mapping[str, Any], key: str, where: str, default: str | None = None,
               non_empty: bool = False) -> str:
        if key not in obj:
            return default if default is not None else ""
        value = obj[key]
        if not isinstance(value, str):
            self.error(f"{where}{key}", f"must be text, got {_type_name(value)}")
            return default or ""
        if non_empty and not value.strip():
            self.error(f"{where}{key}", "must not be empty")
        return value

    def string_list(self, obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        if key not in obj:
            return ()
        value = obj[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(f"{where}{key}", f"must be a list of texts, got {_type_name(value)}")
            return ()
        return tuple(v for v in value if v.strip())

    def integer(self, obj: Mapping[str, Any], key: str, where: str, lo: int, hi: int,
                default: int | None = None) -> int:
        if key not in obj:
            return default if default is not None else lo
        value = obj[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(f"{where}{key}", f"must be a whole number, got {_type_name(value)}")
            return default if default is not None else lo
        if not lo <= value <= hi:
            self.error(f"{where}{key}", f"must be from {lo} to {hi}, got {value}")
        return value

    def number(self, obj: Mapping[str, Any], key: str, where: str, lo: float, hi: float,
               default: float | None = None) -> float:
        if key not in obj:
            return default if default is not None else lo
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(f"{where}{key}", f"must be a number, got {_type_name(value)}")
            return default if default is not None else lo
        if not (lo <= value <= hi) or math.isnan(value):
            self.error(f"{where}{key}", f"must be from {lo:g} to {hi:g}, got {value:g}")
        return float(value)

    def boolean(self, obj: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        if key not in obj:
            return default
        value = obj[key]
        if not isinstance(value, bool):
            self.error(f"{where}{key}", f"must be true or false, got {_type_name(value)}")
            return default
        return value

    def mapping(self, obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
        if key not in obj or obj[key] is None:
            return None
        value = obj[key]
        if not isinstance(value, dict):
            self.error(f"{where}{key}", f"must be an object {{...}}, got {_type_name(value)}")
            return None
        return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, str):
        return f"text {value!r}" if len(value) < 40 else "text"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_TOP_KEYS = {
    "schema_version", "name", "name_zh", "description", "description_zh", "styles", "prompt",
    "negative_prompt", "sampler_name", "scheduler", "steps", "cfg_scale", "size", "hires",
    "face_detail", "recommended", "tags", "order",
}
_TOP_REQUIRED = {"name", "name_zh", "sampler_name", "scheduler", "steps", "cfg_scale", "size"}
_HIRES_KEYS = {"scale", "upscaler", "steps", "denoising_strength", "families"}
_FACE_KEYS = {"enabled", "prompt", "negative_prompt", "denoising_strength", "confidence",
              "mask_blur", "padding", "steps"}
_RECOMMENDED_KEYS = {"checkpoints", "loras"}


def parse_preset(data: Any, source: str = "") -> tuple[Preset | None, list[str]]:
    """Validate the decoded JSON of one preset; returns ``(preset or None, errors)``."""
    c = _Checker()
    if not isinstance(data, dict):
        return None, [f"the file must hold one JSON object {{...}}, got {_type_name(data)}"]
    c.keys(data, "", _TOP_KEYS, _TOP_REQUIRED)
    if "schema_version" in data and data["schema_version"] != 1:
        c.error("schema_version", f"unsupported version {data['schema_version']!r} (this UI reads 1)")

    name = c.string(data, "name", "", non_empty=True).strip()
    name_zh = c.string(data, "name_zh", "", non_empty=True).strip()
    description = c.string(data, "description", "")
    description_zh = c.string(data, "description_zh", "")
    styles = c.string_list(data, "styles", "")
    prompt = c.string(data, "prompt", "", default=PROMPT_PLACEHOLDER)
    if "prompt" in data and isinstance(data["prompt"], str) and PROMPT_PLACEHOLDER not in prompt:
        c.error("prompt", "the template must contain {prompt} where the user's prompt goes")
    negative = c.string(data, "negative_prompt", "")

    sampler = c.string(data, "sampler_name", "", non_empty=True)
    if sampler and isinstance(data.get("sampler_name"), str) and sampler not in KNOWN_SAMPLERS:
        c.error("sampler_name", f"unknown sampler {sampler!r} (use one of: {', '.join(sorted(KNOWN_SAMPLERS))})")
    scheduler = c.string(data, "scheduler", "", non_empty=True)
    if scheduler and isinstance(data.get("scheduler"), str) and scheduler not in KNOWN_SCHEDULERS:
        c.error("scheduler", f"unknown schedule type {scheduler!r} (use one of: {', '.join(sorted(KNOWN_SCHEDULERS))})")
    steps = c.integer(data, "steps", "", *STEPS_RANGE)
    cfg = c.number(data, "cfg_scale", "", *CFG_RANGE)

    sizes: dict[str, tuple[int, int]] = {}
    size_obj = c.mapping(data, "size", "")
    if size_obj is not None:
        if not size_obj:
            c.error("size", f"give at least one of {', '.join(FAMILIES)}")
        for fam, value in size_obj.items():
            where = f"size.{fam}"
            if fam not in FAMILIES:
                c.error(where, f"unknown model family (use {', '.join(FAMILIES)})")
                continue
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            ):
                c.error(where, f"must be [width, height] in whole pixels, got {_type_name(value)}")
                continue
            ok = True
            for axis, v in zip(("width", "height"), value):
                if not SIZE_RANGE[0] <= v <= SIZE_RANGE[1]:
                    c.error(where, f"{axis} {v} is outside {SIZE_RANGE[0]}..{SIZE_RANGE[1]}")
                    ok = False
                elif v % 8:
                    c.error(where, f"{axis} {v} is not a multiple of 8 (try {round(v / 8) * 8})")
                    ok = False
            if ok:
                sizes[fam] = (value[0], value[1])

    hires = None
    h = c.mapping(data, "hires", "")
    if h is not None:
        c.keys(h, "hires.", _HIRES_KEYS, {"scale", "upscaler", "denoising_strength"})
        fams = c.string_list(h, "families", "hires.") or FAMILIES
        for fam in fams:
            if fam not in FAMILIES:
                c.error("hires.families", f"unknown model family {fam!r}")
        hires = HiresFix(
            scale=c.number(h, "scale", "hires.", 1.0, 4.0),
            upscaler=c.string(h, "upscaler", "hires.", non_empty=True),
            steps=c.integer(h, "steps", "hires.", 0, STEPS_RANGE[1], default=0),
            denoising_strength=c.number(h, "denoising_strength", "hires.", 0.0, 1.0),
            families=tuple(f for f in fams if f in FAMILIES),
        )

    face = None
    f = c.mapping(data, "face_detail", "")
    if f is not None:
        c.keys(f, "face_detail.", _FACE_KEYS, {"enabled"})
        face_prompt = c.string(f, "prompt", "face_detail.")
        face = FaceDetail(
            enabled=c.boolean(f, "enabled", "face_detail.", True),
            prompt=face_prompt,
            negative_prompt=c.string(f, "negative_prompt", "face_detail."),
            denoising_strength=c.number(f, "denoising_strength", "face_detail.", 0.0, 1.0, 0.4),
            confidence=c.number(f, "confidence", "face_detail.", 0.0, 1.0, 0.3),
            mask_blur=c.integer(f, "mask_blur", "face_detail.", 0, 64, 4),
            padding=c.integer(f, "padding", "face_detail.", 0, 256, 32),
            steps=c.integer(f, "steps", "face_detail.", 0, STEPS_RANGE[1], 0),
        )

    recommended = Recommended()
    r = c.mapping(data, "recommended", "")
    if r is not None:
        c.keys(r, "recommended.", _RECOMMENDED_KEYS, set())
        recommended = Recommended(
            checkpoints=c.string_list(r, "checkpoints", "recommended."),
            loras=c.string_list(r, "loras", "recommended."),
        )
    tags = c.string_list(data, "tags", "")
    order = c.integer(data, "order", "", 0, 100000, default=1000)

    if c.errors:
        return None, c.errors
    stem = Path(source).stem if source else name
    return (
        Preset(
            name=name, name_zh=name_zh, description=description, description_zh=description_zh,
            styles=styles, prompt=prompt, negative_prompt=negative, sampler_name=sampler,
            scheduler=scheduler, steps=steps, cfg_scale=cfg, sizes=sizes, hires=hires,
            face_detail=face, recommended=recommended, tags=tags, order=order, id=stem,
            source=source,
        ),
        [],
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key '{key}' appears twice")
        out[key] = value
    return out


def load_presets(
    directory: str | Path | None = None,
    *,
    known_styles: Iterable[str] | None = None,
) -> tuple[dict[str, Preset], list[str]]:
    """Read every ``*.json`` in ``directory`` (default: the shipped ``presets/`` folder).

    Returns ``(presets by English name in menu order, problems)``. A file that is not valid JSON or does not
    match the schema is skipped with a problem naming the file and what is wrong. A style the
    preset names that is not in ``known_styles`` (default: the built-in styles) is reported and
    left out of that preset, which is still loaded. Never raises.
    """
    folder = Path(directory) if directory is not None else PRESETS_DIR
    problems: list[str] = []
    presets: dict[str, Preset] = {}
    if not folder.is_dir():
        return presets, [f"presets folder '{folder.name}' not found"]
    style_names = set(known_styles) if known_styles is not None else {s.name for s in BUILTIN_STYLES}
    for path in (m.path for m in scan(folder, (".json",), recursive=False)):  # links out of the folder: left out
        fname = path.name
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{fname}: cannot be read as UTF-8 text ({exc})")
            continue
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            problems.append(f"{fname}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
            continue
        except ValueError as exc:
            problems.append(f"{fname}: {exc}")
            continue
        preset, errors = parse_preset(data, source=fname)
        if preset is None:
            problems.append(f"{fname}: " + "; ".join(errors) + " (preset skipped)")
            continue
        missing = [s for s in preset.styles if s not in style_names]
        if missing:
            problems.append(
                f"{fname}: unknown style(s) {', '.join(repr(m) for m in missing)} left out of the preset"
            )
            preset = replace(preset, styles=tuple(s for s in preset.styles if s in style_names))
        if preset.name in presets:
            problems.append(
                f"{fname}: a preset named '{preset.name}' is already loaded from "
                f"{presets[preset.name].source} (preset skipped)"
            )
            continue
        presets[preset.name] = preset
    ordered = dict(sorted(presets.items(), key=lambda kv: (kv[1].order, kv[0].casefold())))
    return ordered, problems
