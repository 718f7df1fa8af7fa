"""Characters: a saved person to paint again -- name, trigger words, LoRAs with weights, 1-4
reference images with the IP-Adapter model and weight to use them with, prompt and
negative-prompt additions, notes (``character.json``; the files are ``character_files.py``).

A character is expanded at the request edge into the plain A1111 fields, so old clients and the
infotext keep working: its trigger words, prompt addition and ``<lora:name:weight>`` tags are
appended to the prompt, its negative addition to the negative prompt, and each reference image
becomes an ``ip_adapters`` entry. A prompt that already ends with the expansion (an infotext
sent back) is not expanded again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from webui.errors import UserError
from webui.prompts.styles import join_prompts

__all__ = ["Character", "CharacterLora", "check_name", "parse_character", "peel", "expand", "MAX_IMAGES",
           "IMAGE_SUFFIXES", "FIELD"]

FIELD = "characters"
MAX_IMAGES = 4
MAX_LORAS = 8
MAX_TEXT = 2000
NAME_MAX = 64
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Path characters, the infotext's list separator and control characters are refused in names.
_BAD_NAME = re.compile(r'[\\/:*?"<>|,\x00-\x1f\x7f]')
_KEYS = {"schema_version", "name", "trigger_words", "loras", "images", "ip_adapter_model", "ip_adapter_weight",
         "prompt", "negative_prompt", "notes"}
_IMAGE_NAME = re.compile(r"^ref[1-4]\.(png|jpg|jpeg|webp)$")


@dataclass(frozen=True)
class CharacterLora:
    name: str
    weight: float = 1.0

    def tag(self) -> str:
        return f"<lora:{self.name}:{self.weight:g}>"


@dataclass(frozen=True)
class Character:
    name: str
    trigger_words: str = ""
    loras: tuple[CharacterLora, ...] = ()
    images: tuple[str, ...] = ()  # file names inside the character's folder: ref1.png ...
    ip_adapter_model: str = ""
    ip_adapter_weight: float = 0.8
    prompt: str = ""
    negative_prompt: str = ""
    notes: str = ""

    def prompt_addition(self) -> str:
        return join_prompts(self.trigger_words, self.prompt, *(lora.tag() for lora in self.loras))

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": 1, "name": self.name, "trigger_words": self.trigger_words,
                "loras": [{"name": lo.name, "weight": lo.weight} for lo in self.loras],
                "images": list(self.images), "ip_adapter_model": self.ip_adapter_model,
                "ip_adapter_weight": self.ip_adapter_weight, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt, "notes": self.notes}


def check_name(name: Any, field: str = "name") -> str:
    """The name, stripped; a UserError for an empty one, a long one or one with path characters."""
    if not isinstance(name, str) or not name.strip():
        raise UserError("A character needs a name.", field=field)
    name = name.strip()
    if len(name) > NAME_MAX:
        raise UserError(f"A character name may be at most {NAME_MAX} characters long.", field=field)
    bad = sorted(set(_BAD_NAME.findall(name)))
    if bad or name.startswith(".") or name in ("None",):
        shown = " ".join(repr(c) for c in bad) or repr(name[:1])
        raise UserError(f"The character name {name!r} cannot be used: names may not contain {shown} "
                        "(no path characters \\ / : * ? \" < > |, commas or a leading dot).", field=field)
    return name


def _text(data: dict, key: str, problems: list[str]) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        problems.append(f"{key}: must be text of at most {MAX_TEXT} characters")
        return ""
    return value.strip()


def _weight(value: Any, what: str, problems: list[str], lo: float, hi: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
            lo <= value <= hi):
        problems.append(f"{what}: must be a number from {lo:g} to {hi:g}")
        return default
    return float(value)


def _loras(raw: Any, problems: list[str]) -> tuple[CharacterLora, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_LORAS:
        problems.append(f"loras: must be a list of at most {MAX_LORAS} {{name, weight}}")
        return ()
    out = []
    for n, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or re.search(r"[<>:\x00-\x1f]", name):
            problems.append(f"loras[{n}].name: must be a LoRA file name without < > :")
            continue
        out.append(CharacterLora(name.strip(), _weight(item.get("weight"), f"loras[{n}].weight", problems,
                                                       -4.0, 4.0, 1.0)))
    return tuple(out)


def _images(raw: Any, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_IMAGES or not all(
            isinstance(x, str) and _IMAGE_NAME.match(x) for x in raw) or len(set(raw)) != len(raw):
        problems.append(f"images: must be a list of at most {MAX_IMAGES} names like ref1.png")
        return ()
    return tuple(raw)


def parse_character(data: Any, where: str = "character.json") -> Character:
    """A checked Character from decoded JSON; one UserError (field `characters`) listing every problem."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: must hold one JSON object", field=FIELD)
    problems = [f"{k}: unknown key" for k in data if k not in _KEYS]
    if data.get("schema_version", 1) != 1:
        problems.append("schema_version: this app reads version 1")
    try:
        name = check_name(data.get("name"), FIELD)
    except UserError as e:
        problems.append(f"name: {e}")
        name = ""
    char = Character(
        name=name, trigger_words=_text(data, "trigger_words", problems), loras=_loras(data.get("loras"), problems),
        images=_images(data.get("images"), problems), ip_adapter_model=_text(data, "ip_adapter_model", problems),
        ip_adapter_weight=_weight(data.get("ip_adapter_weight"), "ip_adapter_weight", problems, 0.0, 2.0, 0.8),
        prompt=_text(data, "prompt", problems), negative_prompt=_text(data, "negative_prompt", problems),
        notes=_text(data, "notes", problems))
    if char.images and not char.ip_adapter_model:
        problems.append("ip_adapter_model: reference images need an IP-Adapter model")
    if problems:
        raise UserError(f"{where}: " + "; ".join(problems), field=FIELD)
    return char


def _strip_suffix(text: str, addition: str) -> str | None:
    if not addition:
        return text
    if text.strip() == addition:
        return ""
    if text.rstrip().endswith(", " + addition):
        return text.rstrip()[: -len(", " + addition)]
    return None


def peel(text: str, additions: list[str]) -> str:
    """`text` without the additions when it ends with all of them in order (an infotext prompt
    sent back with its characters); otherwise `text` unchanged."""
    inner = text or ""
    for addition in reversed(additions):
        stripped = _strip_suffix(inner, addition)
        if stripped is None:
            return text or ""
        inner = stripped
    return inner


def expand(text: str, additions: list[str]) -> str:
    """`text` with each addition appended (", " between)."""
    return join_prompts(text or "", *additions)
