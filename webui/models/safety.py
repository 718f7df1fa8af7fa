"""Optional safety filter for public deployments (--safety-filter, off by default).

It uses the Stable Diffusion safety checker (a CLIP vision model with concept embeddings, the
diffusers `StableDiffusionSafetyChecker`, e.g. the CompVis/stable-diffusion-safety-checker
weights) from models/safety_checker/: a folder with config.json, the weights and
preprocessor_config.json. Flagged images are removed from the result before they are saved or
shown, and the user gets a warning saying how many. Without the weights the app refuses to start
with --safety-filter rather than pretend to filter. This is a coarse classifier: it misses
things and flags harmless pictures; it is not moderation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from . import model_files

log = logging.getLogger(__name__)

FOLDER_NAME = "safety_checker"


class SafetyFilter:
    def __init__(self, folder: Path, device: torch.device | None = None):
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        self.device = device or torch.device("cpu")
        self.checker = StableDiffusionSafetyChecker.from_pretrained(str(folder), local_files_only=True)
        self.checker.to(self.device).eval()
        self.processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)

    @torch.no_grad()
    def flags(self, images) -> list[bool]:
        if not images:
            return []
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        clip_input = inputs["pixel_values"].to(self.device, self.checker.dtype)
        arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255 for im in images]
        _, flagged = self.checker(clip_input=clip_input, images=arrays)
        return [bool(f) for f in flagged]

    def apply(self, result) -> int:
        """Drop flagged images (with their seeds and infotexts) from `result`; returns how many."""
        flagged = self.flags(result.images)
        keep = [i for i, f in enumerate(flagged) if not f]
        hidden = len(result.images) - len(keep)
        if hidden:
            result.images = [result.images[i] for i in keep]
            result.seeds = [result.seeds[i] for i in keep]
            result.infotexts = [result.infotexts[i] for i in keep]
            result.warnings.append(f"the safety filter hid {hidden} image(s); try another prompt or seed")
        return hidden


def load_safety_filter(models_dir: Path, device: torch.device | None = None) -> SafetyFilter:
    """The filter from models/safety_checker, or SystemExit saying how to enable it."""
    folder = Path(models_dir) / FOLDER_NAME
    if not (folder / "config.json").is_file():
        raise SystemExit(
            f"--safety-filter cannot be enabled: no safety checker in {folder}. Put the diffusers "
            "StableDiffusionSafetyChecker weights there (e.g. the files of "
            "CompVis/stable-diffusion-safety-checker: config.json, model.safetensors, "
            "preprocessor_config.json), or start without --safety-filter.")
    if not model_files.contained(folder, folder):
        raise SystemExit(f"--safety-filter cannot be enabled: a file in {folder} links outside it; copy the "
                         "files into the folder instead.")
    try:
        return SafetyFilter(folder, device)
    except (OSError, ValueError, RuntimeError) as e:
        raise SystemExit(f"--safety-filter cannot be enabled: could not load {folder}: {e}") from e
