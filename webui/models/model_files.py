"""Model files in the models folders: one listing and one name lookup for every kind of model.

A model is a file with one of its kind's extensions or, for kinds that have them, a folder that
holds a marker file (a diffusers folder's ``config.json``). It is listed -- and can be named --
only when its real path, every symlink followed (symlinked subfolders too), stays inside the
kind's folder; a link to another place inside the folder is fine. A model folder is listed only
when everything in it stays inside too. Hidden files and folders are skipped.

A name a user sends is only ever matched against that listing, never joined onto a path, so
nothing outside the folder -- or relative to the server's working directory -- is opened. A name
that is a path (``..``, absolute, a drive) is refused with a :class:`UserError` naming the field.
Hub repo ids (``org/name``) are a separate question: :func:`hub_snapshot` answers it from the
local Hugging Face cache only.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

log = logging.getLogger(__name__)

_warned: set[str] = set()  # links out already logged (listings run on every request)


@dataclass(frozen=True)
class ModelFile:
    path: Path    # where it lies under the folder, links not resolved (its names come from here)
    rel: str      # its path inside the folder, "/"-separated, extension kept ("people/face.safetensors")
    is_dir: bool = False

    @property
    def stem(self) -> str:
        """The file name without its extension; a folder's own name."""
        return self.path.name if self.is_dir else self.path.stem

    @property
    def rel_stem(self) -> str:
        """The path inside the folder without the extension ("people/face")."""
        return self.rel if self.is_dir else self.rel[: len(self.rel) - len(self.path.suffix)]


def is_inside(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path`, with every symlink followed, is `folder` or inside it."""
    root = Path(folder).resolve()
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    return real == root or root in real.parents


def resolve_inside(folder: Path, name: str, what: str, field: str | None = None) -> Path:
    """Resolve a user-supplied relative name inside `folder` (for files that are not models, such
    as outputs); refuse `..`, absolute paths and symlinks that lead out of the folder."""
    if (not isinstance(name, str) or not name or "\x00" in name or os.path.isabs(name)
            or name.startswith(("/", "\\")) or Path(name).drive):
        raise UserError(f"{what} name {name!r} is not a name inside {Path(folder).name}/", field=field)
    root = Path(folder).resolve()
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise UserError(f"{what} {name!r} points outside the {Path(folder).name}/ folder; refused", field=field)
    return target


def _note_refused(folder: Path, path: Path, refused: list[str] | None) -> None:
    rel = path.relative_to(folder).as_posix()
    if refused is not None:
        refused.append(rel)
    key = str(path)
    if key not in _warned:
        _warned.add(key)
        log.warning("not listing %s: it links outside %s", path, folder)


def contained(model_dir: Path, root: Path) -> bool:
    """Whether everything in the model folder `model_dir` (hidden entries aside) stays inside `root`."""
    stack, seen = [Path(model_dir)], set()
    while stack:
        here = stack.pop()
        try:
            real_here = here.resolve(strict=True)
            entries = list(os.scandir(here))
        except (OSError, RuntimeError):
            return False
        if real_here in seen:  # a link loop, or a folder linked twice: looked at once
            continue
        seen.add(real_here)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            p = Path(entry.path)
            if not is_inside(root, p):
                return False
            if p.is_dir():
                stack.append(p)
    return True


def scan(folder: str | os.PathLike, exts: tuple[str, ...], *, marker: str | None = None,
         recursive: bool = True, refused: list[str] | None = None) -> list[ModelFile]:
    """The models in `folder`: files ending in one of `exts` (any case) and, with `marker`,
    folders holding that file (not looked into further), sorted by their path inside `folder`.
    `recursive`: also in subfolders. What links outside the folder is left out (its path inside
    the folder is added to `refused`, and logged once)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    root = folder.resolve()
    exts = tuple(e.lower() for e in exts)
    found: list[ModelFile] = []
    stack = [(folder, frozenset([root]))]  # with the real folders above it: a link back up is a loop
    while stack:
        here, above = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            p = Path(entry.path)
            try:
                real = p.resolve(strict=True)
            except (OSError, RuntimeError):
                continue  # a broken link or a loop: nothing to load
            is_dir = real.is_dir()
            if not is_dir and not entry.name.lower().endswith(exts):
                continue
            if is_dir and not (marker or recursive):
                continue
            if real != root and root not in real.parents:
                _note_refused(folder, p, refused)
                continue
            rel = p.relative_to(folder).as_posix()
            if not is_dir:
                if real.is_file():
                    found.append(ModelFile(p, rel))
            elif marker and (p / marker).is_file():
                if contained(p, root):
                    found.append(ModelFile(p, rel, is_dir=True))
                else:
                    _note_refused(folder, p, refused)
            elif recursive and real not in above:
                stack.append((p, above | {real}))
    return sorted(found, key=lambda m: m.rel.lower())


def check_name(folder: str | os.PathLike, name, what: str, field: str | None = None) -> str:
    """The name as the listing spells it ("/" separators, A1111's " [hash]" suffix dropped).
    UserError for no name, or for a path: `..`, absolute, a drive, a NUL byte."""
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"no {what} name given", field=field)
    wanted = name.strip()
    if wanted.endswith("]") and " [" in wanted:  # an A1111 title: "name.safetensors [hash]"
        wanted = wanted[: wanted.rindex(" [")].strip()
    wanted = wanted.replace("\\", "/")
    if ("\x00" in wanted or wanted.startswith("/") or os.path.isabs(wanted) or re.match(r"[A-Za-z]:", wanted)
            or ".." in wanted.split("/")):
        raise UserError(f"{what} name {name!r} is not a name inside {Path(folder).name}/ (paths are refused); "
                        "give a name from the list", field=field)
    return wanted


def pick(items: list[ModelFile], wanted: str, exts: tuple[str, ...]) -> ModelFile | None:
    """The item `wanted` names: its path inside the folder (with or without the extension), its
    file name, its stem, then its stem in any case. Ties go to the earlier extension in `exts`."""
    order = [e.lower() for e in exts]

    def rank(m: ModelFile) -> int:
        suffix = m.path.suffix.lower()
        return order.index(suffix) if not m.is_dir and suffix in order else len(order)

    lowered = wanted.lower()
    for test in (lambda m: m.rel == wanted, lambda m: m.rel_stem == wanted, lambda m: m.path.name == wanted,
                 lambda m: m.stem == wanted, lambda m: m.stem.lower() == lowered):
        hits = [m for m in items if test(m)]
        if hits:
            return min(hits, key=rank)
    return None


def lookup(folder: str | os.PathLike, name, exts: tuple[str, ...], *, what: str, field: str | None = None,
           marker: str | None = None, recursive: bool = True) -> ModelFile | None:
    """The listed model `name` means, or None when there is none; UserError for a path."""
    wanted = check_name(folder, name, what, field)
    return pick(scan(folder, exts, marker=marker, recursive=recursive), wanted, exts)


def resolve(folder: str | os.PathLike, name, exts: tuple[str, ...], *, what: str, field: str | None = None,
            marker: str | None = None, recursive: bool = True) -> ModelFile:
    """Like :func:`lookup`, with a UserError naming the field and the choices when nothing matches."""
    items = scan(folder, exts, marker=marker, recursive=recursive)
    found = pick(items, check_name(folder, name, what, field), exts)
    if found is None:
        choices = ", ".join(m.rel_stem for m in items[:20]) or f"none (put files in {Path(folder).name}/)"
        raise UserError(f"unknown {what} {name!r}; available: {choices}", field=field)
    return found


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def is_hub_id(name) -> bool:
    """Whether `name` has the form of a Hub repo id, ``org/name``."""
    return isinstance(name, str) and bool(_HUB_ID.fullmatch(name)) and ".." not in name


def hub_snapshot(name, marker: str = "config.json") -> Path | None:
    """The folder of Hub repo `name` in the local Hugging Face cache when it holds `marker`, else
    None. Only the cache is looked at -- never the working directory, never the network."""
    if not is_hub_id(name):
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, marker)
    except Exception:  # noqa: BLE001 - an id the Hub library rejects is simply not cached
        return None
    return Path(cached).parent if isinstance(cached, str) else None
