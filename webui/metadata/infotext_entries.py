"""Infotext keys that extensions write one per unit: "ControlNet 0", "ControlNet 1"... (the A1111
ControlNet extension) and "IP-Adapter 0"... Each value is a "Name: value, Name: value" text;
these turn them into the request fields build_request accepts (without their images).
"""

from __future__ import annotations

import re
from collections.abc import Mapping


def numbered_entries(params: Mapping[str, object], prefix: str) -> list[dict[str, str]]:
    """The values of "<prefix> 0", "<prefix> 1"... in number order, each "Name: value, Name:
    value" text as a dict with lower-case names (how extensions write ControlNet units and
    IP-Adapters into one infotext key each)."""
    keys = sorted((k for k in params if re.fullmatch(re.escape(prefix) + r" \d+", k)), key=lambda k: int(k.split()[-1]))
    out = []
    for key in keys:
        d = {}
        for part in str(params[key]).split(", "):
            name, sep, value = part.partition(": ")
            if sep:
                d[name.strip().lower()] = value.strip()
        out.append(d)
    return out


IP_ADAPTER_WEIGHT = 0.7  # the weight of an "IP-Adapter N" entry without one (and the UI slider's start)
_CONTROLNET_KEYS = {"module": "module", "model": "model", "weight": "weight", "resize mode": "resize_mode",
                    "processor res": "processor_res", "threshold a": "threshold_a", "threshold b": "threshold_b",
                    "guidance start": "guidance_start", "guidance end": "guidance_end",
                    "control mode": "control_mode", "pose": "pose"}


def units_from_infotext(params: dict) -> list[dict]:
    """Unit settings (no images) from "ControlNet N" infotext values, in unit order; the
    result is what build_request accepts, once an image or pose is there."""
    units = []
    for entry in numbered_entries(params, "ControlNet"):
        d: dict = {"enabled": True}
        d.update({_CONTROLNET_KEYS[k]: v for k, v in entry.items() if k in _CONTROLNET_KEYS})
        if "model" in d:
            units.append(d)
    return units


def adapters_from_infotext(params: dict) -> list[dict]:
    """Adapter settings (no reference images) from "IP-Adapter N: Model: x, Weight: w" values."""
    found = []
    for d in numbered_entries(params, "IP-Adapter"):
        try:
            weight = float(d.get("weight", IP_ADAPTER_WEIGHT))
        except ValueError:
            weight = IP_ADAPTER_WEIGHT
        if d.get("model"):
            found.append({"model": d["model"], "weight": weight})
    return found
