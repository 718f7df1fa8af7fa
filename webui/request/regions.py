"""Regions: the picture split into columns or rows, each with its own prompt (issue #18).

The options follow Regional Prompter's documented Matrix mode: a divide ratio such as "1,1"
(two equal parts), the mode "Columns" (side by side) or "Rows" (one above the other), and the
prompt's parts separated by ``BREAK``, one per region in order; the text before ``ADDCOMM`` is
the common prompt, added to every region. The engine's part is engine/extensions/regions.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UserError
from ..validate import number, shown

FIELD = "regions"
MODES = ("Columns", "Rows")
MIN_REGIONS, MAX_REGIONS = 2, 4
_BREAK = re.compile(r"\bBREAK\b")
_ADDCOMM = re.compile(r"\bADDCOMM\b")


@dataclass(frozen=True)
class RegionSpec:
    mode: str = "Columns"
    ratios: tuple[float, ...] = (1.0, 1.0)

    def ratios_text(self) -> str:
        return ",".join(f"{r:g}" for r in self.ratios)

    def infotext(self) -> dict:
        return {"Regions mode": self.mode, "Regions ratios": self.ratios_text()}


def split_prompt(prompt: str) -> tuple[str, list[str]]:
    """(common prompt, region prompts) of a Regional Prompter prompt."""
    parts = _ADDCOMM.split(prompt, maxsplit=1)
    common, rest = (parts[0].strip(), parts[1]) if len(parts) == 2 else ("", parts[0])
    return common, [p.strip() for p in _BREAK.split(rest)]


def region_prompts(prompt: str) -> list[str]:
    """Each region's full prompt: the common prompt, then the region's own."""
    common, regions = split_prompt(prompt)
    return [", ".join(p for p in (common, r) if p) for r in regions]


def parse_ratios(raw) -> tuple[float, ...]:
    if isinstance(raw, str):
        items = [x for x in re.split(r"[,;\s]+", raw.strip()) if x]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise UserError(f"regions ratios must be a text like \"1,1\" or a list of numbers; got {shown(raw)}", field=FIELD)
    out = tuple(number(x, "regions ratio", FIELD) for x in items)
    bad = [r for r in out if not r > 0]
    if bad:
        raise UserError(f"every regions ratio must be above 0 (a region needs some width); got {bad[0]:g}",
                        field=FIELD)
    return out


def parse_regions(raw, prompt: str) -> RegionSpec | None:
    """UI or API options -> a RegionSpec checked against the prompt's parts, or None (off).
    `raw`: None/False/{} (off), or {"mode": ..., "ratios": "1,1"} ("divide_ratio" too)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise UserError("regions must be an object like {\"mode\": \"Columns\", \"ratios\": \"1,1\"}", field=FIELD)
    if raw.get("enabled", True) is False:
        return None
    mode = str(raw.get("mode") or "Columns").strip().title()
    if mode not in MODES:
        raise UserError(f"regions mode must be one of {', '.join(MODES)}; got {shown(raw.get('mode'))}", field=FIELD)
    ratios = parse_ratios(raw.get("ratios", raw.get("divide_ratio", "1,1")))
    if not MIN_REGIONS <= len(ratios) <= MAX_REGIONS:
        raise UserError(f"regions: {MIN_REGIONS} to {MAX_REGIONS} regions; the ratios give {len(ratios)}", field=FIELD)
    prompts = split_prompt(prompt)[1]
    if len(prompts) > MAX_REGIONS:
        raise UserError(f"the prompt has {len(prompts)} parts separated by BREAK; regions take at most {MAX_REGIONS}",
                        field="prompt")
    if len(prompts) != len(ratios):
        raise UserError(f"regions: {len(ratios)} ratios but the prompt has {len(prompts)} region prompts (parts "
                        "separated by BREAK); give one ratio per region prompt", field=FIELD)
    return RegionSpec(mode, ratios)


def bounds(ratios: tuple[float, ...], size: int) -> list[tuple[int, int]]:
    """Each region's [start, end) along an axis of `size` cells; every region at least one cell."""
    total = sum(ratios)
    edges, acc = [0], 0.0
    for r in ratios:
        acc += r
        edges.append(round(acc / total * size))
    spans = list(zip(edges, edges[1:]))
    if any(b <= a for a, b in spans):
        raise UserError(f"regions ratios {','.join(f'{r:g}' for r in ratios)} leave a region with no width at "
                        f"{size} latent cells; make the small ratios larger", field=FIELD)
    return spans
