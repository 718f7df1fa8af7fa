"""What is in the models folder: checkpoints (files, diffusers folders, Hub ids), their
A1111-style titles and hashes. Listing and name lookup follow model_files' rules."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from ..atomic_files import write_atomic
from ..errors import UserError
from .model_files import scan

CHECKPOINT_EXTS = (".safetensors", ".ckpt")


class HashCache:
    """SHA-256 of model files, computed once and remembered on disk by (path, size, mtime)."""

    def __init__(self, cache_file: Path):
        self.cache_file = cache_file
        self._lock = threading.Lock()
        try:
            self._data = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            self._data = {}

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        with self._lock:
            hit = self._data.get(key)
            if hit and hit["stamp"] == stamp:
                return hit["sha256"]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        with self._lock:
            self._data[key] = {"stamp": stamp, "sha256": digest}
            try:
                write_atomic(self.cache_file, json.dumps(self._data).encode())
            except OSError:
                pass  # a read-only models folder only costs re-hashing next start
        return digest


@dataclass(frozen=True)
class Checkpoint:
    name: str            # relative path without extension, A1111's model_name ("sub/portrait-v2")
    filename: str        # absolute path, or the Hub repo id
    kind: str            # "file", "folder" or "hub"

    @property
    def file_label(self) -> str:
        """A1111 titles show the file name with extension."""
        return self.name + Path(self.filename).suffix if self.kind == "file" else self.name


class Catalog:
    def __init__(self, models_dir: Path, extra: list[str] | None = None):
        self.models_dir = Path(models_dir)
        self.checkpoints_dir = self.models_dir / "Stable-diffusion"
        self.hashes = HashCache(self.models_dir / ".hashes.json")
        self._extra = list(extra or [])
        self._items: list[Checkpoint] = []
        self.refresh()

    def add(self, source: str) -> Checkpoint:
        """Register a checkpoint given on the command line (file, folder or Hub id)."""
        if source not in self._extra:
            self._extra.append(source)
        self.refresh()
        return self.find(source)

    def refresh(self) -> list[Checkpoint]:
        items: dict[str, Checkpoint] = {}
        root = self.checkpoints_dir
        for m in scan(root, CHECKPOINT_EXTS, marker="model_index.json"):  # links out of the folder are left out
            items[m.rel_stem] = Checkpoint(m.rel_stem, str(m.path.resolve()), "folder" if m.is_dir else "file")
        for src in self._extra:
            p = Path(src)
            if p.is_file():
                items.setdefault(p.stem, Checkpoint(p.stem, str(p.resolve()), "file"))
            elif p.is_dir():
                items.setdefault(p.name, Checkpoint(p.name, str(p.resolve()), "folder"))
            elif "/" in src and not src.startswith((".", "/")) and src.count("/") == 1:
                items.setdefault(src, Checkpoint(src, src, "hub"))
            else:
                raise UserError(f"--model {src!r} is neither a file, a diffusers folder nor a Hub repo id")
        self._items = sorted(items.values(), key=lambda c: c.name.lower())
        return self._items

    def list(self) -> list[Checkpoint]:
        return list(self._items)

    def short_hash(self, ckpt: Checkpoint) -> str | None:
        """A1111's model hash: the first 10 hex chars of the file's SHA-256 (files only)."""
        if ckpt.kind != "file":
            return None
        return self.hashes.sha256(Path(ckpt.filename))[:10]

    def known_hash(self, ckpt: Checkpoint) -> str | None:
        """The hash if it was already computed (listing must not hash every file)."""
        if ckpt.kind != "file":
            return None
        p = Path(ckpt.filename)
        try:
            st = p.stat()
        except OSError:
            return None
        hit = self.hashes._data.get(str(p.resolve()))
        return hit["sha256"] if hit and hit["stamp"] == [st.st_size, st.st_mtime_ns] else None

    def title(self, ckpt: Checkpoint) -> str:
        h = self.known_hash(ckpt)
        return f"{ckpt.file_label} [{h[:10]}]" if h else ckpt.file_label

    def find(self, name: str) -> Checkpoint:
        """Look a checkpoint up as A1111 does: by title, name, file name, or hash."""
        if not isinstance(name, str) or not name.strip():
            raise UserError("no checkpoint name given", field="sd_model_checkpoint")
        wanted = name.strip()
        if wanted.endswith("]") and " [" in wanted:  # "name.safetensors [hash]"
            wanted = wanted[: wanted.rindex(" [")]
        for c in self._items:
            if wanted in (c.name, c.file_label, c.filename) or name in (self.title(c),):
                return c
        for c in self._items:
            h = self.known_hash(c)
            if h and (h.startswith(wanted.lower()) and len(wanted) >= 8):
                return c
        if ".." in wanted or wanted.startswith(("/", "\\")):
            raise UserError(f"checkpoint {name!r} contains a path; give a name from the checkpoint list",
                            field="sd_model_checkpoint")
        available = ", ".join(c.file_label for c in self._items) or "none (put files in models/Stable-diffusion)"
        raise UserError(f"unknown checkpoint {name!r}; available: {available}", field="sd_model_checkpoint")
