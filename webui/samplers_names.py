"""Sampler and schedule-type names as A1111 spells them, and the aliases clients send.

Pure tables and string functions: nothing here builds a scheduler (samplers.py does, from
`DIFFUSERS_SAMPLERS`), so request validation (`resolve_sampler`) needs no diffusers.

Two vocabularies are kept apart on purpose:

- `SAMPLERS` / `SCHEDULE_TYPES`: what this UI can run (dropdown contents, API validation).
- `A1111_SAMPLERS` / `A1111_SCHEDULE_TYPES`: every name A1111 1.10 writes, so that reading
  an infotext recognises a name even when this UI cannot run it.
"""

from __future__ import annotations

import re

from .errors import UserError

# Samplers this UI offers: all of A1111 1.10's, in its dropdown order, then "DEIS" (diffusers
# only). The ones diffusers has no scheduler for run as the nearest one (`NEAREST_SAMPLERS`).
SAMPLERS: tuple[str, ...] = (
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun",
    "DPM++ 2S a",
    "DPM++ 3M SDE",
    "Euler a",
    "Euler",
    "LMS",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DPM fast",
    "DPM adaptive",
    "Restart",
    "DDIM",
    "DDIM CFG++",
    "PLMS",
    "UniPC",
    "LCM",
    "DEIS",
)

# Every sampler display name A1111 1.10 can write into an infotext, in its dropdown order.
A1111_SAMPLERS: tuple[str, ...] = (
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun",
    "DPM++ 2S a",
    "DPM++ 3M SDE",
    "Euler a",
    "Euler",
    "LMS",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DPM fast",
    "DPM adaptive",
    "Restart",
    "DDIM",
    "DDIM CFG++",
    "PLMS",
    "UniPC",
    "LCM",
)

# What A1111 1.10's /sdapi/v1/samplers says of each sampler: its API aliases and options
# (the schedule "Automatic" means, whether it is second order, ...). Data, for the listing.
_KARRAS = {"scheduler": "karras"}
A1111_SAMPLER_INFO: dict[str, tuple[list[str], dict]] = {
    "DPM++ 2M": (["k_dpmpp_2m"], _KARRAS),
    "DPM++ SDE": (["k_dpmpp_sde"], {**_KARRAS, "second_order": True, "brownian_noise": True}),
    "DPM++ 2M SDE": (["k_dpmpp_2m_sde"], {"scheduler": "exponential", "brownian_noise": True}),
    "DPM++ 2M SDE Heun": (["k_dpmpp_2m_sde_heun"], {"scheduler": "exponential", "brownian_noise": True,
                                                     "solver_type": "heun"}),
    "DPM++ 2S a": (["k_dpmpp_2s_a"], {**_KARRAS, "uses_ensd": True, "second_order": True}),
    "DPM++ 3M SDE": (["k_dpmpp_3m_sde"], {"scheduler": "exponential", "discard_next_to_last_sigma": True,
                                           "brownian_noise": True}),
    "Euler a": (["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    "Euler": (["k_euler"], {}),
    "LMS": (["k_lms"], {}),
    "Heun": (["k_heun"], {"second_order": True}),
    "DPM2": (["k_dpm_2"], {**_KARRAS, "discard_next_to_last_sigma": True, "second_order": True}),
    "DPM2 a": (["k_dpm_2_a"], {**_KARRAS, "discard_next_to_last_sigma": True, "uses_ensd": True,
                               "second_order": True}),
    "DPM fast": (["k_dpm_fast"], {"uses_ensd": True}),
    "DPM adaptive": (["k_dpm_ad"], {"uses_ensd": True}),
    "Restart": (["restart"], {**_KARRAS, "second_order": True}),
    "DDIM": (["ddim"], {}),
    "DDIM CFG++": (["ddim_cfgpp"], {}),
    "PLMS": (["plms"], {}),
    "UniPC": (["unipc"], {}),
    "LCM": (["k_lcm"], {}),
    "DEIS": (["deis"], {}),
}


def sampler_listing() -> list[dict]:
    """/sdapi/v1/samplers: every sampler with A1111's aliases and options."""
    # A1111's response model types options as strings, so its flags come out as "True".
    return [{"name": s, "aliases": list(A1111_SAMPLER_INFO[s][0]),
             "options": {k: str(v) for k, v in A1111_SAMPLER_INFO[s][1].items()}} for s in SAMPLERS]


# Schedule types this UI offers: all of A1111 1.10's (labels). Those diffusers has no sigma
# option for run as the nearest one (engine/samplers.py `NEAREST_SCHEDULES`).
SCHEDULE_TYPES: tuple[str, ...] = (
    "Automatic",
    "Uniform",
    "Karras",
    "Exponential",
    "Polyexponential",
    "SGM Uniform",
    "KL Optimal",
    "Align Your Steps",
    "Simple",
    "Normal",
    "DDIM",
    "Beta",
)

# A1111 1.10 schedule type label -> the internal name its API also accepts.
A1111_SCHEDULE_TYPES: dict[str, str] = {
    "Automatic": "automatic",
    "Uniform": "uniform",
    "Karras": "karras",
    "Exponential": "exponential",
    "Polyexponential": "polyexponential",
    "SGM Uniform": "sgm_uniform",
    "KL Optimal": "kl_optimal",
    "Align Your Steps": "align_your_steps",
    "Simple": "simple",
    "Normal": "normal",
    "DDIM": "ddim",
    "Beta": "beta",
}

# What A1111 1.10's /sdapi/v1/schedulers says beyond name and label: (aliases, default_rho,
# need_inner_model).
_SCHEDULE_INFO: dict[str, tuple[list[str] | None, float, bool]] = {
    "Uniform": (None, -1, True),
    "Karras": (None, 7.0, False),
    "Polyexponential": (None, 1.0, False),
    "SGM Uniform": (["SGMUniform"], -1, True),
    "Simple": (None, -1, True),
    "Normal": (None, -1, True),
    "DDIM": (None, -1, True),
}


def schedule_listing() -> list[dict]:
    """/sdapi/v1/schedulers: every schedule type as A1111 lists it."""
    out = []
    for label in SCHEDULE_TYPES:
        aliases, rho, inner = _SCHEDULE_INFO.get(label, (None, -1, False))
        out.append({"name": A1111_SCHEDULE_TYPES[label], "label": label, "aliases": aliases,
                    "default_rho": rho, "need_inner_model": inner})
    return out


# Lower-case alias -> A1111 sampler display name. Covers A1111's API aliases (k_*), the
# k-diffusion function names (sample_*) and the ComfyUI / diffusers-style snake_case names.
_SAMPLER_ALIASES: dict[str, str] = {
    "k_dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m": "DPM++ 2M",
    "dpm++_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "k_dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "k_dpmpp_2s_a": "DPM++ 2S a",
    "dpmpp_2s_a": "DPM++ 2S a",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "k_dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "euler_a": "Euler a",
    "euler_ancestral": "Euler a",
    "euler ancestral": "Euler a",
    "k_euler": "Euler",
    "euler": "Euler",
    "k_lms": "LMS",
    "lms": "LMS",
    "k_heun": "Heun",
    "heun": "Heun",
    "k_dpm_2": "DPM2",
    "dpm_2": "DPM2",
    "dpm2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
    "dpm_2_a": "DPM2 a",
    "dpm_2_ancestral": "DPM2 a",
    "k_dpm_fast": "DPM fast",
    "dpm_fast": "DPM fast",
    "k_dpm_ad": "DPM adaptive",
    "dpm_adaptive": "DPM adaptive",
    "restart": "Restart",
    "ddim": "DDIM",
    "ddim_cfgpp": "DDIM CFG++",
    "plms": "PLMS",
    "pndm": "PLMS",
    "unipc": "UniPC",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
    "k_lcm": "LCM",
    "lcm": "LCM",
    "deis": "DEIS",
}
for _name in (*A1111_SAMPLERS, *SAMPLERS):
    _SAMPLER_ALIASES.setdefault(_name.lower(), _name)

# Lower-case alias -> A1111 schedule type label.
_SCHEDULE_ALIASES: dict[str, str] = {}
for _label, _internal in A1111_SCHEDULE_TYPES.items():
    _SCHEDULE_ALIASES[_label.lower()] = _label
    _SCHEDULE_ALIASES[_internal] = _label
_SCHEDULE_ALIASES.update(
    {
        "sgmuniform": "SGM Uniform",
        "sgm uniform": "SGM Uniform",
        "ddim_uniform": "DDIM",  # ComfyUI's name
        "ays": "Align Your Steps",
    }
)

# Old A1111 API aliases for combined names ("k_dpmpp_2m_ka" = "DPM++ 2M Karras").
_UNDERSCORE_SUFFIXES: dict[str, str] = {"_ka": "Karras", "_karras": "Karras", "_exp": "Exponential"}

# Schedule suffixes tried longest first so "SGM Uniform" wins over "Uniform".
_SUFFIXES: list[tuple[str, str]] = sorted(
    ((alias, label) for alias, label in _SCHEDULE_ALIASES.items() if "_" not in alias),
    key=lambda item: -len(item[0]),
)

_SPACES = re.compile(r"\s+")


def _clean(name: object) -> str:
    if name is None:
        return ""
    return _SPACES.sub(" ", str(name)).strip()


def _lookup_a1111_sampler(name: str) -> str | None:
    """A1111 display name for an exact name or alias (case-insensitive), else None."""
    return _SAMPLER_ALIASES.get(name.lower())


def split_legacy_sampler(name: str) -> tuple[str, str]:
    """Split a pre-1.9 combined sampler name into (sampler, schedule type).

    "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); "DPM++ 2M SDE Exponential" ->
    ("DPM++ 2M SDE", "Exponential"); "Euler a" -> ("Euler a", "Automatic").
    Aliases are resolved ("k_dpmpp_2m_ka" -> ("DPM++ 2M", "Karras")). The sampler part is
    returned with A1111's spelling when it is a known name, otherwise as given (stripped).
    The schedule is always an A1111 1.10 label (a key of `A1111_SCHEDULE_TYPES`).
    """
    text = _clean(name)
    if not text:
        return "", "Automatic"
    known = _lookup_a1111_sampler(text)
    if known is not None:
        return known, "Automatic"
    lower = text.lower()
    for suffix, label in _UNDERSCORE_SUFFIXES.items():
        if lower.endswith(suffix):
            base = _lookup_a1111_sampler(text[: -len(suffix)])
            if base is not None:
                return base, label
    for suffix, label in _SUFFIXES:
        if lower.endswith(" " + suffix):
            base = text[: -len(suffix) - 1].strip()
            if base:
                return _lookup_a1111_sampler(base) or base, label
    return text, "Automatic"


def normalize_sampler(name: str | None) -> str | None:
    """The `SAMPLERS` entry a client means, or None when this UI cannot run it.

    Case-insensitive; accepts display names, A1111 API aliases ("k_dpmpp_2m", "k_euler_a"),
    snake_case names ("dpmpp_2m", "euler_a", "euler_ancestral", "uni_pc") and legacy combined
    names ("DPM++ 2M Karras" -> "DPM++ 2M"; use `split_legacy_sampler` or
    `resolve_sampler_and_schedule` to keep the schedule part).
    """
    text = _clean(name)
    if not text:
        return None
    known = _lookup_a1111_sampler(text)
    if known is None:
        base, _schedule = split_legacy_sampler(text)
        known = _lookup_a1111_sampler(base)
    return known if known in SAMPLERS else None


def normalize_schedule_type(name: str | None) -> str | None:
    """The `SCHEDULE_TYPES` entry a client means ("karras", "sgm_uniform", "Karras"), or None.

    ComfyUI's "normal" is A1111's "Normal". An empty or missing name gives "Automatic".
    """
    text = _clean(name)
    if not text:
        return "Automatic"
    label = _SCHEDULE_ALIASES.get(text.lower())
    return label if label in SCHEDULE_TYPES else None


def resolve_sampler_and_schedule(
    sampler_name: str | None, scheduler: str | None = None
) -> tuple[str | None, str | None]:
    """(sampler, schedule type) for an API request or infotext, A1111 1.9+ style.

    A schedule suffix in the sampler name ("DPM++ 2M Karras") wins over `scheduler`, as in
    A1111. Each part is None when this UI cannot run it; a missing scheduler is "Automatic".
    """
    base, legacy_schedule = split_legacy_sampler(_clean(sampler_name))
    schedule = legacy_schedule if legacy_schedule != "Automatic" else scheduler
    return normalize_sampler(base), normalize_schedule_type(schedule)


def a1111_sampler_name(name: str | None) -> str | None:
    """A1111 1.10 display name for any known spelling or alias (runnable or not), else None."""
    text = _clean(name)
    return _lookup_a1111_sampler(text) if text else None


def a1111_schedule_label(name: str | None) -> str | None:
    """A1111 1.10 schedule type label for any known spelling ("karras", "sgm_uniform")."""
    text = _clean(name)
    return _SCHEDULE_ALIASES.get(text.lower()) if text else None


# ---- what runs here -------------------------------------------------------------------------

# sampler -> (diffusers class name, fixed kwargs, schedule used by "Automatic").
# Timestep spacing is always explicit: otherwise diffusers lets each class fall back to its own
# default when the checkpoint's config omits it, and the same model would sample differently
# from a single file than from a diffusers folder. k-diffusion samplers in A1111 space sigmas
# linearly over the whole schedule ("linspace"); its DDIM/PLMS use the "leading" spacing.
_K = {"timestep_spacing": "linspace"}
DIFFUSERS_SAMPLERS: dict[str, tuple[str, dict, str]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {**_K, "algorithm_type": "dpmsolver++", "solver_order": 2}, "Karras"),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {**_K, "algorithm_type": "sde-dpmsolver++", "solver_order": 2},
                     "Exponential"),
    "DPM++ 2M SDE Heun": ("DPMSolverMultistepScheduler", {**_K, "algorithm_type": "sde-dpmsolver++",
                                                           "solver_order": 2, "solver_type": "heun"}, "Exponential"),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, "Karras"),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {**_K, "algorithm_type": "sde-dpmsolver++", "solver_order": 2},
                     "Exponential"),
    "DPM fast": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}, "Uniform"),
    "DPM adaptive": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}, "Uniform"),
    "Restart": ("HeunDiscreteScheduler", _K, "Karras"),
    "DDIM CFG++": ("DDIMScheduler", {"timestep_spacing": "leading", "steps_offset": 1}, "Uniform"),
    "DPM++ SDE": ("DPMSolverSDEScheduler", _K, "Karras"),
    "DPM2": ("KDPM2DiscreteScheduler", _K, "Karras"),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", _K, "Karras"),
    "Euler a": ("EulerAncestralDiscreteScheduler", _K, "Uniform"),
    "Euler": ("EulerDiscreteScheduler", _K, "Uniform"),
    "LMS": ("LMSDiscreteScheduler", _K, "Uniform"),
    "Heun": ("HeunDiscreteScheduler", _K, "Uniform"),
    "DDIM": ("DDIMScheduler", {"timestep_spacing": "leading", "steps_offset": 1}, "Uniform"),
    "PLMS": ("PNDMScheduler", {"timestep_spacing": "leading", "steps_offset": 1, "skip_prk_steps": True}, "Uniform"),
    "UniPC": ("UniPCMultistepScheduler", _K, "Uniform"),
    "LCM": ("LCMScheduler", {}, "Uniform"),
    "DEIS": ("DEISMultistepScheduler", _K, "Uniform"),
}

AVAILABLE_SAMPLERS = [s for s in SAMPLERS if s in DIFFUSERS_SAMPLERS]

# Samplers diffusers has no scheduler for: the nearest one above runs and the result says so.
NEAREST_SAMPLERS: dict[str, str] = {
    "DPM++ 2S a": "DPM++ 2S a ran as diffusers' single-step DPM-Solver++ (2nd order, no ancestral noise)",
    "DPM++ 3M SDE": "DPM++ 3M SDE ran as DPM++ 2M SDE (diffusers has no 3rd-order SDE solver)",
    "DPM fast": "DPM fast ran as diffusers' single-step DPM-Solver++ (3rd order)",
    "DPM adaptive": "DPM adaptive ran as diffusers' single-step DPM-Solver++ (3rd order, the steps asked for)",
    "Restart": "Restart ran as Heun (diffusers has no Restart sampler)",
    "DDIM CFG++": "DDIM CFG++ ran as DDIM (diffusers has no CFG++)",
}


def resolve_sampler(name: str) -> tuple[str, str]:
    """Return (sampler, schedule) for an A1111 name, old combined names ("DPM++ 2M Karras") included."""
    sampler, schedule = split_legacy_sampler(name)  # the suffix is read before anything drops it
    if sampler not in DIFFUSERS_SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; available: {', '.join(AVAILABLE_SAMPLERS)}",
                        field="sampler_name")
    return sampler, schedule or "Automatic"
