"""The `__metadata__` of a .safetensors file's JSON header (a LoRA's `ss_*` training fields),
read without loading any tensor. /sdapi/v1/loras returns it as A1111 does."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

_MAX_HEADER = 64 * 1024 * 1024  # a header this large is not a safetensors file we should read
_cache: dict[tuple[str, int, int], dict] = {}
_lock = threading.Lock()


def read_metadata(path: str | Path) -> dict:
    """The file's metadata ({} for other formats or unreadable files). Values that hold JSON
    objects or lists (e.g. `ss_tag_frequency`) come back parsed, as A1111 returns them."""
    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        return {}
    try:
        st = p.stat()
    except OSError:
        return {}
    key = (str(p), st.st_mtime_ns, st.st_size)
    with _lock:
        if key in _cache:
            return dict(_cache[key])
    meta = _read(p)
    with _lock:
        _cache[key] = meta
    return dict(meta)


def _read(p: Path) -> dict:
    try:
        with p.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _MAX_HEADER:
                return {}
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    raw = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(raw, dict):
        return {}
    out = {}
    for k, v in raw.items():
        if isinstance(v, str) and v.startswith("{"):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[str(k)] = v
    return out
