"""Image captions for /sdapi/v1/interrogate: a BLIP captioning model in transformers' layout.

The model is a folder in ``models/BLIP`` holding ``config.json`` (BlipForConditionalGeneration),
the weights, ``preprocessor_config.json`` / ``processor_config.json`` and the tokenizer files --
what ``save_pretrained`` writes, e.g. a download of Salesforce/blip-image-captioning-base. It is
read from that folder only (nothing is fetched); the first such folder by name is used.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
from PIL import Image

from . import model_files
from ..errors import UserError

log = logging.getLogger(__name__)

BLIP_SUBDIR = "BLIP"
MAX_NEW_TOKENS = 40


def blip_dir(models_dir: Path) -> Path:
    return Path(models_dir) / BLIP_SUBDIR


def find_blip(models_dir: Path) -> Path | None:
    """The first BLIP folder (one holding config.json) in models/BLIP, or None."""
    folders = [m for m in model_files.scan(blip_dir(models_dir), (), marker="config.json", recursive=False)
               if m.is_dir]
    return folders[0].path if folders else None


def missing_message(models_dir: Path) -> str:
    return (f"interrogate needs a BLIP captioning model: put a transformers BLIP folder (config.json, the "
            f"weights, preprocessor_config.json and the tokenizer files, e.g. Salesforce/blip-image-captioning-base) "
            f"in {blip_dir(models_dir)}")


class Captioner:
    """The BLIP model, loaded on first use and kept on `device`."""

    def __init__(self, models_dir: Path, device: torch.device):
        self.models_dir, self.device = Path(models_dir), device
        self._loaded: tuple[Path, object, object] | None = None
        self._lock = threading.Lock()

    def _load(self):
        folder = find_blip(self.models_dir)
        if folder is None:
            raise UserError(missing_message(self.models_dir), field="model")
        if self._loaded is None or self._loaded[0] != folder:
            from transformers import BlipForConditionalGeneration, BlipProcessor

            try:
                processor = BlipProcessor.from_pretrained(str(folder), local_files_only=True)
                model = BlipForConditionalGeneration.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError, KeyError) as e:
                raise UserError(f"the BLIP model in {folder} cannot be read ({str(e)[:160]}); "
                                f"{missing_message(self.models_dir)}", field="model") from None
            self._loaded = (folder, processor, model.to(self.device).eval())
            log.info("interrogate: loaded BLIP from %s", folder)
        return self._loaded[1], self._loaded[2]

    def caption(self, image: Image.Image) -> str:
        with self._lock:
            processor, model = self._load()
            inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
            return processor.decode(out[0], skip_special_tokens=True).strip()

    def unload(self) -> None:
        with self._lock:
            self._loaded = None


__all__ = ["BLIP_SUBDIR", "Captioner", "blip_dir", "find_blip", "missing_message"]
