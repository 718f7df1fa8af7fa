"""The request: one validated type for every task, and each feature's options with their bounds.

Pure on purpose: these modules import PIL, numpy and the pure helpers (errors, validate,
settings, samplers_names, images/uploads/infotext_entries) -- never torch, cv2, gradio,
diffusers or transformers, so the edge (API bodies, UI handlers, tests) can parse and check a
request without loading the engine. The engine modules import their option types from here.

- generation.py: GenerationRequest and build_request (the one parse of UI / A1111 fields)
- fields.py: the typed field readers (int, float, bool, text, size, choice)
- controlnet.py: ControlUnit and parse_units; ipadapter.py: IPAdapterRef and parse_adapters
- hires.py: hires fix choices and output size; face.py: face detail options and prompt lengths
"""

from .controlnet import ControlUnit, parse_units, units_from_alwayson
from .face import check_prompt_lengths
from .generation import (
    MASK_PRESETS, MASKED_CONTENT, MAX_SEED, MAX_SEED_64, RESIZE_MODES, TASKS, GenerationRequest, build_request, check_upload,
)
from .hires import SAME_SAMPLER, SAME_SCHEDULER
from .ipadapter import IPAdapterRef, parse_adapters

__all__ = [
    "MASK_PRESETS", "MASKED_CONTENT", "MAX_SEED", "MAX_SEED_64", "RESIZE_MODES", "SAME_SAMPLER", "SAME_SCHEDULER", "TASKS", "ControlUnit",
    "GenerationRequest", "IPAdapterRef", "build_request", "check_prompt_lengths", "check_upload",
    "parse_adapters", "parse_units", "units_from_alwayson",
]
