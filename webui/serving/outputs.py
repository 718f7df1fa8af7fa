"""Saving results in A1111's layout: outputs/<task>-images/YYYY-MM-DD/NNNNN-SEED.png, each PNG
carrying the `parameters` chunk. A failing disk never loses an image: the result keeps the
images in memory and gets a warning instead.

Numbers are padded to five digits and keep counting past 99999 (100000-SEED.png ...), as
A1111's do. A save never replaces a file: the bytes go to a hidden temporary file in the same
folder, which is then hard-linked to its final name -- a link fails when that name exists
(another process saving into the same folder, a file put there by hand) and the save moves
on to the next number. The next number of each folder is kept in memory, so a day folder of
100k images is listed once, not on every save; a name found taken lists it again.
"""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from ..atomic_files import write_new
from ..models.model_files import resolve_inside
from ..engine.manager import GenerationResult
from ..errors import UserError
from ..metadata.image_meta import image_bytes_with_infotext, png_bytes_with_infotext
from ..options import folder_inside

log = logging.getLogger(__name__)

# Numbering must not race between this process's concurrent saves; other processes are kept
# apart by the exclusive link. Re-entrant: save_result holds it across a batch so the batch's
# numbers are consecutive.
save_lock = threading.RLock()
_NUM = re.compile(r"^(\d{5,})[-.]")
# folder (path, st_dev, st_ino) -> (next number, the folder's mtime when that was known)
_counters: OrderedDict[tuple[str, int, int], tuple[int, int]] = OrderedDict()
_COUNTERS_KEPT = 64
_TRIES = 100  # names found taken in a row before a save gives up (with an OSError)


def scan_next_number(folder: Path) -> int:
    """One more than the highest NNNNN prefix (five digits or more) in `folder`."""
    best = -1
    with os.scandir(folder) as entries:
        for entry in entries:
            m = _NUM.match(entry.name)
            if m:
                best = max(best, int(m.group(1)))
    return best + 1


def _folder_key(folder: Path) -> tuple[str, int, int]:
    st = folder.stat()
    return str(folder), st.st_dev, st.st_ino


def _known_next(folder: Path, key: tuple[str, int, int]) -> int | None:
    """The remembered next number, while the folder is as this process left it: another
    writer, or a folder made again (an inode can be reused), changes its mtime."""
    hit = _counters.pop(key, None)
    return hit[0] if hit is not None and hit[1] == folder.stat().st_mtime_ns else None


def create_png(image: Image.Image, path: Path, infotext: str | None) -> Path:
    """Save a new PNG with the `parameters` chunk at `path`; FileExistsError when it exists."""
    return write_new(path, png_bytes_with_infotext(image, infotext))


def save_numbered(folder: Path, name: Callable[[int], str], image: Image.Image, infotext: str | None,
                  write=create_png) -> Path:
    """Save `image` as folder/name(n) for the next free number n; returns the path.

    `write(image, path, infotext)` must create `path` or raise FileExistsError (create_png;
    fault-injection tests pass others). A taken name means the remembered number is stale:
    the folder is listed again and the save goes on from there, never over that file.
    """
    folder = Path(folder)
    with save_lock:
        folder.mkdir(parents=True, exist_ok=True)
        key = _folder_key(folder)
        n = _known_next(folder, key)
        if n is None:
            n = scan_next_number(folder)
        for _ in range(_TRIES):
            path = folder / name(n)
            try:
                write(image, path, infotext)
            except FileExistsError:
                n = max(n + 1, scan_next_number(folder))
                continue
            except BaseException:
                _remember(folder, key, n)
                raise
            _remember(folder, key, n + 1)
            return path
        _remember(folder, key, n)
    raise FileExistsError(errno.EEXIST, f"no free file name after {_TRIES} tries", str(folder))


def _remember(folder: Path, key: tuple[str, int, int], n: int) -> None:
    _counters[key] = (n, folder.stat().st_mtime_ns)
    while len(_counters) > _COUNTERS_KEPT:
        _counters.popitem(last=False)


def task_folder(outputs_dir: Path, task: str, options: dict | None = None) -> Path:
    """The day folder of a task's results: outdir_samples when set, else the task's
    outdir_<kind>_samples (both inside the outputs folder: options.folder_inside)."""
    # A1111 keeps inpaint results with img2img.
    kind = "txt2img" if task == "txt2img" else "img2img"
    folder = Path(outputs_dir) / f"{kind}-images"
    options = options or {}
    key = "outdir_samples" if options.get("outdir_samples") else f"outdir_{kind}_samples"
    if options.get(key):
        try:
            folder = folder_inside(outputs_dir, options[key], key) or folder
        except UserError as e:  # a link changed since the option was set
            log.warning("%s; saving into %s", e, folder)
    return folder / _dt.date.today().isoformat()


def image_writer(options: dict | None) -> tuple[str, Callable]:
    """The file extension and write(image, path, infotext) for the samples_format option
    (jpeg_quality for JPEG and lossy WebP, webp_lossless)."""
    options = options or {}
    fmt = str(options.get("samples_format") or "png").lower()
    if fmt == "png":
        return "png", create_png
    quality, lossless = options.get("jpeg_quality"), bool(options.get("webp_lossless")) and fmt == "webp"

    def write(image, path, infotext):
        return write_new(path, image_bytes_with_infotext(image, infotext, fmt, quality=quality, lossless=lossless))
    return fmt, write


def save_result(result: GenerationResult, outputs_dir: Path, write=create_png, options: dict | None = None
                ) -> GenerationResult:
    """Write every image of `result`; fills result.paths (in image order: a failed save leaves
    the later images with no path). On error -- unwritable folder, full disk -- adds a warning
    and keeps every image in memory. `write(image, path, infotext)` creates one new file (see
    save_numbered; create_png is replaced by the writer of the samples_format in `options`, the
    A1111 options in force: format, quality, folders, save_txt)."""
    options = options or {}
    folder = task_folder(outputs_dir, result.request.task, options)
    ext, chosen = image_writer(options)
    write = chosen if write is create_png else write
    try:
        with save_lock:
            for img, seed, info in zip(result.images, result.seeds, result.infotexts):
                path = save_numbered(folder, lambda n, seed=seed: f"{n:05d}-{seed}.{ext}", img, info, write)
                result.paths.append(path)
                if options.get("save_txt") and info:
                    write_new(path.with_suffix(".txt"), info.encode("utf-8"))
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
