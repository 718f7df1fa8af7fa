"""Saving results in A1111's layout: outputs/<task>-images/YYYY-MM-DD/NNNNN-SEED.png, each PNG
carrying the `parameters` chunk. A failing disk never loses an image: the result keeps the
images in memory and gets a warning instead."""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import re
import threading
from pathlib import Path

from .catalog import resolve_inside
from .engine import GenerationResult
from .errors import UserError
from .image_meta import save_png

log = logging.getLogger(__name__)

save_lock = threading.Lock()  # numbering must not race between concurrent saves
_lock = save_lock
_NUM = re.compile(r"^(\d{5})[-.]")


def next_number(folder: Path) -> int:
    """The next free NNNNN prefix in `folder` (extras files are named NNNNN.png)."""
    return _next_number(folder)


def _next_number(folder: Path) -> int:
    best = -1
    for p in folder.iterdir():
        m = _NUM.match(p.name)
        if m:
            best = max(best, int(m.group(1)))
    return best + 1


def task_folder(outputs_dir: Path, task: str) -> Path:
    # A1111 keeps inpaint results with img2img.
    kind = "txt2img" if task == "txt2img" else "img2img"
    return Path(outputs_dir) / f"{kind}-images" / _dt.date.today().isoformat()


def save_result(result: GenerationResult, outputs_dir: Path, write=save_png) -> GenerationResult:
    """Write every image of `result`; fills result.paths (in image order: a failed save leaves
    the later images with no path). On error -- unwritable folder, full disk -- adds a warning
    and keeps every image in memory. `write(image, path, infotext)` is the file writer
    (save_png; fault-injection tests pass one that writes to a full device)."""
    folder = task_folder(outputs_dir, result.request.task)
    try:
        with _lock:
            folder.mkdir(parents=True, exist_ok=True)
            n = _next_number(folder)
            for i, (img, seed, info) in enumerate(zip(result.images, result.seeds, result.infotexts)):
                path = folder / f"{n + i:05d}-{seed}.png"
                write(img, path, info)
                result.paths.append(path)
    except OSError as e:
        log.warning("could not save images to %s: %s", folder, e)
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        saved = f"{len(result.paths)} of {len(result.images)} images were saved" if result.paths else \
            "images were not saved"
        result.warnings.append(f"{saved} to {folder} ({why}); "
                               "download them from the gallery before closing the page")
    return result


def resolve_output(outputs_dir: Path, name: str) -> Path:
    """A file a user asks for (history, downloads) by its path relative to the outputs folder:
    it must be an existing image inside that folder; `..` and symlinks out are refused."""
    path = resolve_inside(Path(outputs_dir), name, "output file", field="file")
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp") or not path.is_file():
        raise UserError(f"no image {name!r} in the outputs folder", field="file")
    return path
