"""A1111 sampler + schedule type names -> a fresh diffusers scheduler for one request.

Schedulers keep per-run state (timesteps, model outputs of earlier steps), so two requests
must never share an instance: `build_scheduler` hands out a deep copy of a cached prototype
(building some, e.g. KDPM2, costs ~180 ms; a copy costs a few ms).
"""

from __future__ import annotations

import copy
import inspect
import json
import threading

import diffusers

from ..errors import UserError
from ..samplers_names import (AVAILABLE_SAMPLERS, DIFFUSERS_SAMPLERS as _TABLE, NEAREST_SAMPLERS, SCHEDULE_TYPES,
                              resolve_sampler)

# schedule type -> scheduler kwargs (applied only where the class accepts them)
_SCHEDULES: dict[str, dict] = {
    "Uniform": {},
    "Normal": {},  # A1111's and ComfyUI's "normal": timesteps spaced evenly, as Uniform
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
    "DDIM": {"timestep_spacing": "leading", "steps_offset": 1},
}

# Schedule types diffusers has no sigma option for -> (the one that runs, what the result says).
NEAREST_SCHEDULES: dict[str, tuple[str, str]] = {
    "Polyexponential": ("Exponential", "the Polyexponential schedule ran as Exponential (its rho=1 form)"),
    "KL Optimal": ("Karras", "the KL Optimal schedule ran as Karras (diffusers has no KL Optimal sigmas)"),
    "Align Your Steps": ("Karras", "the Align Your Steps schedule ran as Karras (diffusers has no AYS sigmas "
                                   "for every model)"),
}


def scheduler_kwargs(sampler: str, schedule: str) -> tuple[type, dict, list[str]]:
    """The class and kwargs for a sampler/schedule pair, plus notes on what could not be honoured."""
    cls_name, fixed, auto = _TABLE[sampler]
    cls = getattr(diffusers, cls_name)
    effective = auto if schedule == "Automatic" else schedule
    notes = [NEAREST_SAMPLERS[sampler]] if sampler in NEAREST_SAMPLERS else []
    if effective in NEAREST_SCHEDULES:
        effective, note = NEAREST_SCHEDULES[effective]
        notes.append(note)
    accepted = inspect.signature(cls.__init__).parameters
    # Reset sigma flags a checkpoint's own scheduler config may carry, then apply the schedule.
    kwargs = {k: False for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas") if k in accepted}
    kwargs.update(fixed)
    for k, v in _SCHEDULES.get(effective, {}).items():
        if k in accepted:
            kwargs[k] = v
        elif schedule != "Automatic":
            notes.append(f"{sampler} has no {schedule} schedule in diffusers; its default schedule was used")
    if cls_name == "DPMSolverSDEScheduler":
        try:
            import torchsde  # noqa: F401
        except ImportError:
            raise UserError("DPM++ SDE needs the torchsde package (pip install torchsde)",
                            field="sampler_name") from None
    return cls, kwargs, list(dict.fromkeys(notes))


class SchedulerFactory:
    """Caches one prototype per (model scheduler config, sampler, schedule); hands out copies."""

    def __init__(self):
        self._cache: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def build(self, base_config: dict, sampler: str, schedule: str):
        cls, kwargs, notes = scheduler_kwargs(sampler, schedule)
        # Keys starting with "_" are bookkeeping (version, which values were defaults).
        base = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
        key = (json.dumps(base, sort_keys=True, default=str), sampler, schedule)
        with self._lock:
            proto = self._cache.get(key)
            if proto is None:
                proto = cls.from_config(base, **kwargs)
                self._cache[key] = proto
        return copy.deepcopy(proto), notes


__all__ = ["AVAILABLE_SAMPLERS", "NEAREST_SCHEDULES", "SCHEDULE_TYPES", "SchedulerFactory", "resolve_sampler", "scheduler_kwargs"]
