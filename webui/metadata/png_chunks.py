"""PNG chunks read straight from the bytes: every text chunk (before or after the pixels,
compressed or not, each capped at 16 MB decompressed) and a copy of a PNG without its text,
for files whose text Pillow refuses. Pure byte work, no Pillow: uploads open through it and
the metadata reader finds text Pillow does not report.
"""

from __future__ import annotations

import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_MAX_TEXT_CHUNK = 16 * 1024 * 1024  # decompressed size cap per PNG text chunk


def _inflate(data: bytes) -> bytes | None:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, _MAX_TEXT_CHUNK)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else out


def _png_chunks(data: bytes):
    """(type, body, start, end) of each whole chunk of a PNG byte string, up to IEND."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length], pos, end
        if kind == b"IEND":
            return
        pos = end


def png_without_text(data: bytes) -> bytes:
    """The PNG with its text chunks removed (for files whose text Pillow refuses)."""
    parts = [data[: len(PNG_SIGNATURE)]]
    last = len(PNG_SIGNATURE)
    for kind, _body, start, end in _png_chunks(data):
        if kind in _PNG_TEXT_CHUNKS:
            parts.append(data[last:start])
            last = end
    parts.append(data[last:])
    return b"".join(parts)


def png_text(data: bytes, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """Every text chunk of a PNG whose key is not in `skip`, read straight from the bytes.

    Pillow reports the text placed before the pixel data when it opens a file; text placed
    after it (some tools append it) would need the whole image decoded, and Pillow refuses
    compressed text over 1 MB (large ComfyUI workflows): this reads both, with each
    chunk's decompressed size capped at 16 MB.
    """
    found: dict[str, str] = {}
    if not data.startswith(PNG_SIGNATURE):
        return found
    for kind, body, _start, _end in _png_chunks(data):
        if kind not in _PNG_TEXT_CHUNKS:
            continue
        key, _, rest = body.partition(b"\x00")
        name = key.decode("latin-1")
        if not name or name in skip or name in found:
            continue
        text: str | None = None
        if kind == b"tEXt":
            text = rest.decode("latin-1")
        elif kind == b"zTXt" and rest[:1] == b"\x00":
            raw = _inflate(rest[1:])
            text = None if raw is None else raw.decode("latin-1")
        elif kind == b"iTXt" and len(rest) >= 2:
            compressed = rest[0] == 1
            _lang, _, rest = rest[2:].partition(b"\x00")
            _tkey, _, raw = rest.partition(b"\x00")
            raw = _inflate(raw) if compressed else raw
            text = None if raw is None else raw.decode("utf-8", errors="replace")
        if text is not None:
            found[name] = text
    return found
